"""Signup to a live instance and back, on the real engine, the real plugins, the sandbox cloud
and PostgreSQL."""

import time

import httpx
import pytest
from sqlalchemy import select

from clawdet.instances import credentials
from clawdet.instances.requests import request_destroy
from clawdet.reconciler import fleet
from db.models import Instance, LlmUsage
from tests.fixtures import eventually
from tests.fixtures.provisioning import instance, new_instance, records_named, servers_named

pytestmark = [pytest.mark.engine, pytest.mark.postgres]


def test_create_ready_then_destroy_leaves_nothing(reconciler, prov_db, prov_settings, cloud_sandbox):
    instance_id = new_instance(prov_db, prov_settings, "alice")
    assert reconciler.drain() == 1
    ready = instance(prov_db, instance_id)
    assert ready.status == "ready", ready.status_message
    assert ready.observed_generation == ready.generation and ready.health == "healthy"
    assert ready.url == "https://alice.clawdet.test"
    # Ready means the gateway answered a first chat, through the LLM proxy with its own key.
    eventually(
        lambda: usage_requests(prov_db, instance_id) >= 1, timeout=10, what="usage"
    )  # in the background
    assert cloud_sandbox.llm.completions()[-1].model == prov_settings.instance_model

    [server] = servers_named(cloud_sandbox, "alice")
    assert str(server["id"]) == ready.server_id and server["ipv4"] == ready.ipv4
    [record] = [r for r in records_named(cloud_sandbox, "alice.clawdet.test") if r["type"] == "A"]
    assert record["content"] == ready.ipv4 and record["proxied"] is True
    assert httpx.get(f"http://{ready.ipv4}:18789/healthz", timeout=3).status_code == 200

    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        request_destroy(session, row.user, row)
    assert reconciler.drain() == 1
    gone = instance(prov_db, instance_id)
    assert gone.status == "destroyed" and gone.server_id is None
    inventory = cloud_sandbox.inventory()
    assert inventory["servers"] == [] and inventory["firewalls"] == []
    assert inventory["dns_records"] == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{ready.ipv4}:18789/healthz", timeout=1)
    assert not (prov_settings.project_dir / "stacks" / "Pulumi.alice.yaml").exists()


def usage_requests(database, instance_id: str) -> int:
    with database.sessions() as session:
        rows = session.scalars(select(LlmUsage).where(LlmUsage.instance_id == instance_id)).all()
        return sum(row.requests for row in rows)


def test_out_of_band_drift_is_found_and_repaired(reconciler, prov_db, prov_settings, cloud_sandbox):
    instance_id = new_instance(prov_db, prov_settings, "drifty")
    reconciler.drain()
    ready = instance(prov_db, instance_id)
    assert ready.status == "ready", ready.status_message
    target = reconciler.target

    clean = fleet.scan(prov_db, target)
    assert clean.drifted == [] and clean.api_calls <= 3

    # 1. A record changed behind our back.
    record_id = ready.dns_record_id
    cloud_sandbox.drift.set_dns_content(record_id, "127.99.99.99")
    report = fleet.scan(prov_db, target)
    assert report.drifted[0].action == "repair" and "points to 127.99.99.99" in report.drifted[0].problems[0]
    assert reconciler.drain() == 1
    [record] = [r for r in records_named(cloud_sandbox, "drifty.clawdet.test") if r["type"] == "A"]
    assert record["content"] == instance(prov_db, instance_id).ipv4

    # 2. The gateway died; the server still runs.
    server_id = int(instance(prov_db, instance_id).server_id)
    cloud_sandbox.drift.kill_gateway(server_id)
    report = fleet.scan(prov_db, target)
    assert report.drifted[0].action == "reboot"
    assert instance(prov_db, instance_id).health == "unhealthy"
    assert reconciler.drain() == 1
    assert instance(prov_db, instance_id).health == "healthy"
    assert cloud_sandbox.gateway_state(server_id) == "up"

    # 3. The server was deleted.
    cloud_sandbox.drift.delete_server(server_id)
    report = fleet.scan(prov_db, target)
    assert "server is missing" in report.drifted[0].problems
    assert reconciler.drain() == 1
    repaired = instance(prov_db, instance_id)
    assert repaired.status == "ready" and repaired.server_id != str(server_id)
    [server] = servers_named(cloud_sandbox, "drifty")
    assert str(server["id"]) == repaired.server_id
    [record] = [r for r in records_named(cloud_sandbox, "drifty.clawdet.test") if r["type"] == "A"]
    assert record["content"] == repaired.ipv4
    assert fleet.scan(prov_db, target).drifted == []


def test_reboot_and_rebuild_actions(reconciler, prov_db, prov_settings, cloud_sandbox):
    from clawdet.instances.requests import request_action

    instance_id = new_instance(prov_db, prov_settings, "acts")
    reconciler.drain()
    first = instance(prov_db, instance_id)
    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        request_action(session, row.user, row, "reboot")
    assert reconciler.drain() == 1
    rebooted = instance(prov_db, instance_id)
    assert rebooted.status == "ready" and rebooted.server_id == first.server_id
    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        request_action(session, row.user, row, "rebuild")
    assert reconciler.drain() == 1
    rebuilt = instance(prov_db, instance_id)
    assert rebuilt.status == "ready" and rebuilt.server_id != first.server_id
    assert len(servers_named(cloud_sandbox, "acts")) == 1


def test_final_failure_cleans_up_and_tells_the_user(reconciler, prov_db, prov_settings, cloud_sandbox):
    cloud_sandbox.faults.add(service="cloudflare", method="POST", error_rate=1.0, status=500)
    instance_id = new_instance(prov_db, prov_settings, "doomed")
    deadline = time.monotonic() + 240
    while instance(prov_db, instance_id).status != "failed" and time.monotonic() < deadline:
        if not reconciler.run_once():
            time.sleep(0.2)
    failed = instance(prov_db, instance_id)
    assert failed.status == "failed" and failed.attempts == reconciler.config.max_attempts
    assert "try again" in failed.status_message.lower()
    inventory = cloud_sandbox.inventory()
    assert servers_named(cloud_sandbox, "doomed") == [] and inventory["firewalls"] == []
    with prov_db.sessions() as session:
        messages = [e.message for e in session.get(Instance, instance_id).events]
    assert any("trying again" in m for m in messages) and any("Giving up" in m for m in messages)


def test_a_wrong_llm_key_is_never_a_silent_ready(
    reconciler, prov_db, prov_settings, cloud_sandbox, monkeypatch
):
    """The server gets a key the proxy does not know (the proxy holds a stale hash, as a lost
    write would leave it): the gateway's first chat is refused, the instance is not ready, and the
    owner reads why in plain words."""
    issue = credentials.issue_llm_key

    def issued_with_a_stale_hash(row, roots):
        key = issue(row, roots)
        row.llm_key_hash = credentials.key_hash("ck_a_key_the_server_does_not_have_0123456789")
        return key

    monkeypatch.setattr(credentials, "issue_llm_key", issued_with_a_stale_hash)
    monkeypatch.setattr(credentials, "deployed_llm_key", lambda row, key: None)  # the write is lost
    instance_id = new_instance(prov_db, prov_settings, "stale")
    deadline = time.monotonic() + 240
    while instance(prov_db, instance_id).status != "failed" and time.monotonic() < deadline:
        if not reconciler.run_once():
            time.sleep(0.2)
    failed = instance(prov_db, instance_id)
    assert failed.status == "failed" and failed.ready_at is None and failed.health != "healthy"
    assert "key for the language model was refused" in failed.status_message
    with prov_db.sessions() as session:
        events = session.get(Instance, instance_id).events
        assert any(e.step == "checking" for e in events)
        assert all(e.step != "ready" for e in events)


def test_a_failing_repair_never_deletes_a_live_server(prov_settings, prov_db, cloud_sandbox):
    from dataclasses import replace

    from clawdet.instances.requests import request_action
    from clawdet.reconciler.reconciler import Reconciler
    from tests.fixtures.provisioning import FAST

    reconciler = Reconciler(prov_settings, prov_db, config=replace(FAST, max_attempts=2, backoff_base=0.1))
    instance_id = new_instance(prov_db, prov_settings, "keepme")
    reconciler.drain()
    server_id = instance(prov_db, instance_id).server_id
    cloud_sandbox.faults.add(
        service="hetzner", method="POST", path="/v1/servers/*/actions/reboot", status=500
    )
    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        request_action(session, row.user, row, "reboot")
    import time

    deadline = time.monotonic() + 120
    while instance(prov_db, instance_id).status != "failed" and time.monotonic() < deadline:
        if not reconciler.run_once():
            time.sleep(0.1)
    failed = instance(prov_db, instance_id)
    assert failed.status == "failed" and "kept" in failed.status_message
    assert [str(s["id"]) for s in servers_named(cloud_sandbox, "keepme")] == [server_id]
    assert failed.server_id == server_id


def test_reconcile_and_scan_commands_for_cron_and_ci(
    reconciler, prov_db, prov_env, prov_settings, cloud_sandbox
):
    import os
    import subprocess
    import sys

    from tests.fixtures.provisioning import REPO

    def clawdet(*args):
        return subprocess.run(
            [sys.executable, "-m", "clawdet.cli", *args],
            cwd=REPO,
            env={**os.environ, **prov_env},
            capture_output=True,
            text=True,
            timeout=300,
        )

    instance_id = new_instance(prov_db, prov_settings, "gitops")
    pending = clawdet("reconcile", "--dry-run")
    assert pending.returncode == 1 and "plan  gitops" in pending.stdout and " up" in pending.stdout
    assert instance(prov_db, instance_id).status == "pending"  # a dry run changes nothing

    converged = clawdet("reconcile", "--stack", "gitops")
    assert converged.returncode == 0, converged.stdout + converged.stderr
    assert "summary  operations=1" in converged.stdout and "unresolved=0" in converged.stdout
    assert instance(prov_db, instance_id).status == "ready"
    assert clawdet("scan").returncode == 0

    cloud_sandbox.drift.set_dns_content(instance(prov_db, instance_id).dns_record_id, "127.99.0.1")
    drifted = clawdet("reconcile", "--dry-run")
    assert drifted.returncode == 1 and "drift gitops" in drifted.stdout.replace("  ", " ")
    repaired = clawdet("reconcile")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "drifted_before=1" in repaired.stdout and "unresolved=0" in repaired.stdout
    [record] = [r for r in records_named(cloud_sandbox, "gitops.clawdet.test") if r["type"] == "A"]
    assert record["content"] == instance(prov_db, instance_id).ipv4
