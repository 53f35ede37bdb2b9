"""Day two without data loss: every change after creation is an in-place update of the app layer
(pushed over SSH by pulumi-command), never a new server, and the customer's data stays (real
engine, stand-in plugins, the sandbox's SSH servers and stand-in gateways)."""

import time
from dataclasses import replace

import hcloud
import httpx
import pytest

from clawdet.instances import credentials, rotation
from clawdet.instances.requests import (
    request_pause,
    request_restart,
    request_resume,
    request_tier_change,
    request_token_rotation,
)
from clawdet.reconciler.reconciler import DEPLOY_TYPE, RELEASE_TYPE, SERVER_TYPE, Reconciler
from clawdet.rollouts import pins
from db.models import Instance
from programs import tiers
from tests.fixtures.provisioning import FAST, instance, new_instance, pinned, records_named, servers_named

pytestmark = [pytest.mark.engine, pytest.mark.postgres]

NEXT_IMAGE = pinned("ghcr.io/openclaw/openclaw:2026.9.7")


def change(prov_db, instance_id, request, *args):
    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        request(session, row.user, row, *args)


def planned(reconciler, instance_id) -> dict[str, set[str]]:
    with reconciler.database.sessions() as session:
        row = session.get(Instance, instance_id)
        config = reconciler.stack_config(row)
        name = row.stack_name
    return reconciler.stacks.planned(name, config)


def assert_in_place(plan: dict[str, set[str]]) -> None:
    """`pulumi preview` shows an update of the app layer and nothing else."""
    assert plan.get(RELEASE_TYPE) == {"update"} and plan.get(DEPLOY_TYPE) == {"update"}, plan
    assert set(plan) <= {RELEASE_TYPE, DEPLOY_TYPE, SERVER_TYPE, "hcloud:index/volume:Volume"}, plan
    assert plan.get(SERVER_TYPE, {"update"}) == {"update"}, plan


def proxy_status(settings, key: str) -> int:
    response = httpx.post(
        settings.llm_proxy_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    return response.status_code


def gateway_status(ready: Instance, token: str) -> int:
    response = httpx.get(
        f"http://{ready.ipv4}:18789/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return response.status_code


def test_every_change_is_in_place_and_the_data_stays(reconciler, prov_db, prov_settings, cloud_sandbox):
    instance_id = new_instance(prov_db, prov_settings, "daytwo")
    assert reconciler.drain() == 1
    first = instance(prov_db, instance_id)
    assert first.status == "ready", first.status_message
    assert first.volume_id and first.config_hash and first.openclaw_image
    data = cloud_sandbox.store.path.parent / "volumes" / first.volume_id / "state" / "MEMORY.md"
    data.write_text("the customer's memory")

    # A rotated LLM key: pushed in place; the old key works until the new one is live.
    roots = credentials.Roots.of(prov_settings)
    old_key = credentials.llm_key(roots, first)
    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        rotation.rotate_llm_key(session, row, actor=row.user)
    assert proxy_status(prov_settings, old_key) == 200
    assert_in_place(planned(reconciler, instance_id))
    assert reconciler.drain() == 1
    rotated = instance(prov_db, instance_id)
    assert rotated.status == "ready" and rotated.server_id == first.server_id, rotated.status_message
    assert rotated.config_hash != first.config_hash
    new_key = credentials.llm_key(roots, rotated)
    assert proxy_status(prov_settings, old_key) == 401 and proxy_status(prov_settings, new_key) == 200

    # A new gateway token: the old one stops working once the new one is live.
    old_token = credentials.gateway_token(roots, rotated)
    change(prov_db, instance_id, request_token_rotation)
    assert reconciler.drain() == 1
    retokened = instance(prov_db, instance_id)
    new_token = credentials.gateway_token(roots, retokened)
    assert retokened.server_id == first.server_id
    assert gateway_status(retokened, old_token) == 401 and gateway_status(retokened, new_token) == 200

    # A new OpenClaw version (an operator's pin; a rollout sets the same desired image): same
    # server, same volume, the data still there. A new OPENCLAW_IMAGE alone moves no running one.
    upgrader = Reconciler(
        replace(prov_settings, openclaw_image=pinned("ghcr.io/openclaw/openclaw:2026.9.8")), prov_db
    )
    assert planned(upgrader, instance_id) == {}
    with prov_db.session() as session:
        pins.pin(session, "operator:test", session.get(Instance, instance_id), NEXT_IMAGE, by_digest=True)
    assert_in_place(planned(upgrader, instance_id))
    assert upgrader.drain() == 1
    upgraded = instance(prov_db, instance_id)
    assert upgraded.status == "ready", upgraded.status_message
    assert (upgraded.server_id, upgraded.volume_id) == (first.server_id, first.volume_id)
    assert upgraded.openclaw_image == NEXT_IMAGE and data.read_text() == "the customer's memory"

    # A restart: the containers, not the server.
    change(prov_db, instance_id, request_restart)
    assert upgrader.drain() == 1
    restarted = instance(prov_db, instance_id)
    assert restarted.status == "ready" and restarted.server_id == first.server_id
    assert restarted.restarts == 1 and restarted.config_hash == upgraded.config_hash


def test_a_tier_change_resizes_the_same_server_and_grows_the_volume(
    reconciler, prov_db, prov_settings, cloud_sandbox
):
    instance_id = new_instance(prov_db, prov_settings, "grower")
    with prov_db.session() as session:
        user = session.get(Instance, instance_id).user
        user.payment_method, user.paid = "stripe", True
    assert reconciler.drain() == 1
    first = instance(prov_db, instance_id)
    first_disk = tiers.server_type_for("free", first.region).disk_gb
    change(prov_db, instance_id, request_tier_change, "pro")
    plan = planned(reconciler, instance_id)
    assert plan.get(SERVER_TYPE) == {"update"} and plan.get("hcloud:index/volume:Volume") == {"update"}, plan
    assert reconciler.drain() == 1
    resized = instance(prov_db, instance_id)
    assert resized.status == "ready" and resized.server_id == first.server_id, resized.status_message
    hetzner = hcloud.Client(token=cloud_sandbox.hcloud_token, api_endpoint=cloud_sandbox.hcloud_url)
    server = hetzner.servers.get_by_id(int(first.server_id))
    assert server.server_type.name == tiers.server_type_for("pro", first.region).name
    assert server.status == "running" and server.primary_disk_size == first_disk  # disk kept: can go back
    [volume] = cloud_sandbox.inventory()["volumes"]
    assert volume["size"] == tiers.TIERS["pro"].volume_gb and str(volume["id"]) == first.volume_id

    with prov_db.session() as session, pytest.raises(Exception, match="never shrink"):
        row = session.get(Instance, instance_id)
        request_tier_change(session, row.user, row, "free")


def test_pause_removes_the_server_and_resume_brings_back_the_same_volume(
    reconciler, prov_db, prov_settings, cloud_sandbox
):
    instance_id = new_instance(prov_db, prov_settings, "sleeper")
    assert reconciler.drain() == 1
    first = instance(prov_db, instance_id)
    data = cloud_sandbox.store.path.parent / "volumes" / first.volume_id / "state" / "MEMORY.md"
    data.write_text("kept while paused")

    change(prov_db, instance_id, request_pause)
    assert reconciler.drain() == 1
    paused = instance(prov_db, instance_id)
    assert paused.status == "paused" and paused.server_id is None, paused.status_message
    assert servers_named(cloud_sandbox, "sleeper") == []
    [volume] = cloud_sandbox.inventory()["volumes"]
    assert str(volume["id"]) == first.volume_id and volume["server"] is None
    assert [f["name"] for f in cloud_sandbox.inventory()["firewalls"]] == ["sleeper"]
    [record] = records_named(cloud_sandbox, "sleeper.clawdet.test")
    assert record["type"] == "A" and record["content"] == "127.0.0.1"
    page = httpx.get(prov_settings.public_url + "/", headers={"Host": "sleeper.clawdet.test"}, timeout=10)
    assert page.status_code == 503 and "sleeper is paused" in page.text

    change(prov_db, instance_id, request_resume)
    assert reconciler.drain() == 1
    resumed = instance(prov_db, instance_id)
    assert resumed.status == "ready", resumed.status_message
    assert resumed.server_id not in (None, first.server_id) and resumed.volume_id == first.volume_id
    assert data.read_text() == "kept while paused"
    [record] = [r for r in records_named(cloud_sandbox, "sleeper.clawdet.test") if r["type"] == "A"]
    assert record["content"] == resumed.ipv4


def test_a_failed_remote_command_is_retried_reported_in_words_and_changes_nothing_live(
    reconciler, prov_db, prov_settings, cloud_sandbox
):
    instance_id = new_instance(prov_db, prov_settings, "stubborn")
    assert reconciler.drain() == 1
    first = instance(prov_db, instance_id)
    roots = credentials.Roots.of(prov_settings)
    old_token = credentials.gateway_token(roots, first)
    live_env = cloud_sandbox.store.path.parent / "servers" / first.server_id / "opt/openclaw/.env"
    assert old_token in live_env.read_text()

    rule = cloud_sandbox.faults.add(service="ssh", method="EXEC", path="docker compose * config *", status=1)
    change(prov_db, instance_id, request_token_rotation)
    deadline = time.monotonic() + 240
    while instance(prov_db, instance_id).status != "failed" and time.monotonic() < deadline:
        if not reconciler.run_once():
            time.sleep(0.2)
    failed = instance(prov_db, instance_id)
    assert failed.status == "failed" and failed.attempts == FAST.max_attempts
    assert "did not take its new configuration" in failed.status_message, failed.status_message
    assert "sandbox fault rule" in failed.status_message
    with prov_db.sessions() as session:
        messages = [e.message for e in session.get(Instance, instance_id).events]
    assert sum("trying again" in m for m in messages) == FAST.max_attempts - 1
    # The new files never went live: the gateway runs on, with the old token, on the same server.
    assert old_token in live_env.read_text()
    assert gateway_status(first, old_token) == 200
    assert [s["id"] for s in servers_named(cloud_sandbox, "stubborn")] == [int(first.server_id)]

    cloud_sandbox.faults.remove(rule.id)
    change(prov_db, instance_id, request_restart)  # the owner tries again
    assert reconciler.drain() == 1
    recovered = instance(prov_db, instance_id)
    new_token = credentials.gateway_token(roots, recovered)
    assert recovered.status == "ready" and recovered.server_id == first.server_id, recovered.status_message
    assert gateway_status(recovered, new_token) == 200 and gateway_status(recovered, old_token) == 401
