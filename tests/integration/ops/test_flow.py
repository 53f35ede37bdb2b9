"""Operations on the real engine, the sandbox cloud, PostgreSQL and a real SMTP server: every
email of an instance's life, debounced health alerts, metrics that move, logs without secrets,
and a backup/restore that brings the stacks back."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import secrets
import shutil
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clawdet import logs
from clawdet.instances import credentials
from clawdet.mail import outbox as mail
from clawdet.mail import triggers as mail_triggers
from clawdet.mail.notifier import EmailNotifier
from clawdet.reconciler import fleet
from clawdet.reconciler.reconciler import Reconciler
from db.engine import Database
from db.models import Instance
from sandbox.mail_sink import MailSink
from tests.fixtures.provisioning import FAST, instance

pytestmark = [pytest.mark.engine, pytest.mark.postgres]


@pytest.fixture
def sink(tmp_path):
    with MailSink(tmp_path / "mail") as box:
        yield box


@pytest.fixture
def ops_settings(prov_settings, sink):
    return dataclasses.replace(prov_settings, smtp_host=sink.host, smtp_port=sink.port, smtp_starttls=False)


@pytest.fixture
def log_text(ops_settings):
    stream = io.StringIO()
    logs.configure(ops_settings, stream=stream, level="DEBUG", fmt="json")
    yield stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "clawdet"]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


@pytest.fixture
def observed(ops_settings, prov_db):
    return Reconciler(ops_settings, prov_db, config=FAST, notifier=EmailNotifier(ops_settings))


def signup(database: Database, settings, name: str, password: str) -> str:
    """What the web app does for a sign-up and "Create my instance" (request id included)."""
    from clawdet.accounts import verification
    from clawdet.accounts.service import complete_details, register
    from clawdet.instances.requests import request_instance
    from clawdet.logs import bound
    from db.models import OperationRequest

    with database.session() as session:
        user = register(
            session, name=name.title(), email=f"{name}@example.com", password=password, free_beta=True
        )
        complete_details(session, user, email=f"{name}@example.com", accept_terms=True)
        link = verification.link(settings.secret_key, settings.public_url, user)
        verification.confirm(session, settings.secret_key, link.rsplit("/", 1)[1])  # the emailed link
        with bound(request_id=f"req-{name}"):
            instance = request_instance(session, user, subdomain=name)
            # What the web app's listener records (it may have already, when it serves this database).
            session.merge(
                OperationRequest(
                    instance_id=instance.id, request_id=f"req-{name}", generation=instance.generation
                )
            )
        return instance.id


def kinds(sink) -> list[str]:
    return [m["kind"] for m in sink.messages()]


def scrape(database) -> dict:
    from prometheus_client import CollectorRegistry, generate_latest

    from webapp.metrics import DatabaseCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(database))
    text = generate_latest(registry).decode()
    return {
        s.name + json.dumps(s.labels, sort_keys=True): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_life_of_an_instance_in_emails_metrics_and_logs(
    observed, ops_settings, prov_db, cloud_sandbox, sink, log_text
):
    password = "a-password-nobody-logs"
    instance_id = signup(prov_db, ops_settings, "mira", password)
    before = scrape(prov_db)

    assert observed.drain() == 1
    assert instance(prov_db, instance_id).status == "ready"
    mail_triggers.queue_due(ops_settings, prov_db)
    mail.drain(ops_settings, prov_db)
    assert sorted(kinds(sink)) == ["instance_ready", "welcome"]
    ready = next(m for m in sink.messages() if m["kind"] == "instance_ready")
    assert "https://mira.clawdet.test" in ready["text"] and "https://mira.clawdet.test" in ready["html"]

    after = scrape(prov_db)
    key = 'clawdet_reconcile_total{"kind": "create", "outcome": "success"}'
    assert after[key] == before.get(key, 0) + 1
    assert after['clawdet_reconcile_duration_seconds_count{"kind": "create"}'] == 1

    # The gateway dies and comes back again and again: one "down", one "back up".
    server_id = int(instance(prov_db, instance_id).server_id)
    target = observed.target
    for _ in range(5):
        cloud_sandbox.drift.kill_gateway(server_id)
        fleet.scan(prov_db, target, notifier=observed.notifier)
        cloud_sandbox.drift.revive_gateway(server_id)
        fleet.scan(prov_db, target, notifier=observed.notifier)
    mail.drain(ops_settings, prov_db)
    assert kinds(sink).count("health_down") == 1 and kinds(sink).count("health_up") == 1

    # A real outage is repaired by the reconciler; the repair counts as drift repaired.
    with prov_db.session() as session:
        session.get(Instance, instance_id).requested_action = None
    cloud_sandbox.drift.delete_server(server_id)
    fleet.scan(prov_db, target, notifier=observed.notifier)
    assert observed.drain() == 1 and instance(prov_db, instance_id).health == "healthy"
    final = scrape(prov_db)
    assert final['clawdet_drift_found_total{"action": "repair"}'] >= 1
    assert final['clawdet_drift_repaired_total{"action": "repair"}'] == 1
    assert final['clawdet_health_probe_seconds_count{"ok": "true"}'] >= 5

    text = log_text.getvalue()
    assert '"request_id": "req-mira"' in text  # the worker's lines for the operation carry it
    ready_row = instance(prov_db, instance_id)
    known = [
        password,
        ops_settings.secret_key,
        ops_settings.pulumi_passphrase,
        ops_settings.cloud_env["HCLOUD_TOKEN"],
        ops_settings.cloud_env["CLOUDFLARE_API_TOKEN"],
        ops_settings.credentials_root,
        ops_settings.gateway_token_root,
        credentials.gateway_token(credentials.Roots.of(ops_settings), ready_row),
        credentials.llm_key(credentials.Roots.of(ops_settings), ready_row),
    ]
    for secret in known:
        assert secret not in text
        for message in sink.messages():
            assert secret not in message["text"] and secret not in message["html"]


def test_a_final_failure_emails_what_to_do(observed, ops_settings, prov_db, cloud_sandbox, sink):
    cloud_sandbox.faults.add(service="cloudflare", method="POST", error_rate=1.0, status=500)
    instance_id = signup(prov_db, ops_settings, "doomed", "another password")
    deadline = time.monotonic() + 240
    while instance(prov_db, instance_id).status != "failed" and time.monotonic() < deadline:
        if not observed.run_once():
            time.sleep(0.2)
    mail.drain(ops_settings, prov_db)
    [failed] = [m for m in sink.messages() if m["kind"] == "instance_failed"]
    assert "What to do" in failed["text"] or "What to do" in failed["html"]
    assert "Try again" in failed["text"]


def test_backup_wipe_restore_brings_stacks_back(
    observed, ops_settings, prov_db, cloud_sandbox, tmp_path, postgres_template
):
    from clawdet.ops import backup as stack_backup

    instance_id = signup(prov_db, ops_settings, "kept", "kept password")
    assert observed.drain() == 1
    name = instance(prov_db, instance_id).stack_name
    state_before = observed.stacks.export(name)
    report = stack_backup.backup(ops_settings, prov_db, tmp_path / "backup", stacks=observed.stacks)
    assert report.stacks == [name]

    # Wipe: a new empty database, an empty state backend, no stack files.
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(prov_db.url).set(drivername="postgresql", database="postgres")
    wiped = f"wiped_{secrets.token_hex(4)}"
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {wiped}")
    try:
        empty = Database(make_url(prov_db.url).set(database=wiped).render_as_string(hide_password=False))
        shutil.rmtree(ops_settings.pulumi_backend_url.removeprefix("file://"))
        (ops_settings.project_dir / "stacks" / f"Pulumi.{name}.yaml").unlink()
        from clawdet.reconciler.stacks import Stacks

        fresh = Stacks(ops_settings, observed.target)
        assert fresh.export(name) == {}
        stack_backup.restore(ops_settings, empty, tmp_path / "backup", stacks=fresh)
        restored = fresh.export(name)
        assert [r["urn"] for r in restored["resources"]] == [r["urn"] for r in state_before["resources"]]
        assert instance(empty, instance_id).server_id == instance(prov_db, instance_id).server_id
        # The restored stack is live: a refresh-up finds nothing to change.
        assert fresh.preview_changes(name).get("create", 0) == 0
        empty.dispose()
    finally:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {wiped} WITH (FORCE)")
