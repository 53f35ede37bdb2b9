"""Backups of a fake server's gateway state, end to end without the engine: OpenClaw's own
`backup create` and `backup verify` run in the (emulated) gateway container over SSH, the
archive is fetched, sealed with the instance's key and stored in the sandbox's S3 server (moto),
then downloaded, opened and checked; a changed stored copy is caught; retention prunes."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from clawdet.backups import export, nightly, retention, service
from clawdet.backups.service import Kind
from db.models import Backup, Instance, OutboxEmail, User, utcnow
from tests.fixtures import REPO
from tests.fixtures.backups import FakeServer, backup_env, customer, members
from tests.fixtures.ops import make_admin
from tests.integration.ops.test_metrics import scrape, value

pytestmark = pytest.mark.postgres


def test_a_backup_is_made_on_the_server_sealed_stored_and_opens_again(
    box, hcloud_client, database, backup_settings, backup_store, tmp_path, client, settings, caplog
):
    server = FakeServer(box, hcloud_client, "claw-backup")
    assert server.deploy("token-1", "0123abcd").status == 0
    (server.volume_folder / "state/memory.md").write_text("remember the pelican")
    instance_id = customer(database, server, "backup")

    row = service.create(backup_settings, database, instance_id, Kind.MANUAL)
    assert row.status == "succeeded", row.message
    assert row.verified is True and "openclaw backup verify: ok" in row.verify_message
    assert row.size > row.archive_size > 0 and row.key_version == service.KEY_VERSION
    stored = backup_store.client.get_object(Bucket=backup_store.bucket, Key=row.object_key)["Body"].read()
    assert len(stored) == row.size and stored.startswith(b"CLAWBK1\n")
    # Nothing is left behind on the server: the archive went through the volume's backups folder
    # (not the container's tmpfs, which `docker compose cp` cannot read) and is gone from it.
    assert list((server.volume_folder / "backups").iterdir()) == []
    assert not list((server.folder / "tmp").glob("clawdet-*"))
    assert not list((backup_settings.data_dir / "backup-work").iterdir())

    archive = tmp_path / "export.tar.gz"
    umask = os.umask(0o022)
    try:
        service.download(backup_settings, database, row.id, archive)
    finally:
        os.umask(umask)
    assert archive.stat().st_mode & 0o777 == 0o600  # made so, never readable by others meanwhile
    files = members(archive)
    assert service.archive_manifest(archive)["assets"]
    assert any(
        name.endswith("/memory.md") and data == b"remember the pelican" for name, data in files.items()
    )

    checked = service.verify(backup_settings, database, row.id)
    assert checked.verified is True and checked.verified_at is not None

    # The owner's export: the archive sealed again with a fresh key that only the link carries
    # (sealed with SECRET_KEY, which the web app shares); the web app decrypts it on the way.
    web = dataclasses.replace(backup_settings, secret_key=settings.secret_key)
    with caplog.at_level(logging.DEBUG):
        link = export.export_link(web, database, row.id, lifetime=timedelta(minutes=5))
    export_key = export.opened_token(web.secret_key, link.url.rsplit("/", 1)[1]).key
    in_clear = (
        export_key.hex(),
        base64.b64encode(export_key).decode(),
        base64.urlsafe_b64encode(export_key).decode(),
    )
    assert not [form for form in in_clear if form in link.url or form in caplog.text]
    # Only this instance's exports: the bucket is shared by every test of the session.
    [exported] = backup_store.keys(f"{export.PREFIX}{instance_id}/")
    copy = backup_store.client.get_object(Bucket=backup_store.bucket, Key=exported)["Body"].read()
    assert copy.startswith(b"CLAWBK1\n") and archive.read_bytes()[:512] not in copy
    path = urlsplit(link.url).path
    downloaded = client.get(path)
    assert downloaded.status_code == 200 and downloaded.data == archive.read_bytes()
    assert downloaded.headers["Content-Length"] == str(archive.stat().st_size)
    assert 'filename="backup-' in downloaded.headers["content-disposition"]
    forged = client.get(path[:-8] + "AAAAAAAA")
    assert forged.status_code == 404 and forged.get_json()["error"]["code"] == "link_invalid"

    # A changed copy is refused before anything is sent; once expired, the copy is deleted.
    changed = copy[:40] + bytes([copy[40] ^ 1]) + copy[41:]
    backup_store.client.put_object(Bucket=backup_store.bucket, Key=exported, Body=changed)
    refused = client.get(path)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "backup_corrupt"
    export.delete_expired(backup_store, link.expires_at - timedelta(seconds=1))
    assert backup_store.exists(exported)
    export.delete_expired(backup_store, link.expires_at)
    assert not backup_store.exists(exported)
    assert client.get(path).get_json()["error"]["code"] == "link_expired"

    # A stored copy changed in the bucket (one byte) no longer opens, and verify says so.
    damaged = bytearray(stored)
    damaged[len(damaged) // 2] ^= 0x40
    backup_store.client.put_object(Bucket=backup_store.bucket, Key=row.object_key, Body=bytes(damaged))
    checked = service.verify(backup_settings, database, row.id)
    assert checked.verified is False and "changed or sealed with another key" in checked.verify_message
    with pytest.raises(service.BackupError) as refused:
        service.download(backup_settings, database, row.id, tmp_path / "again.tar.gz")
    assert refused.value.code == "backup_corrupt" and not (tmp_path / "again.tar.gz").exists()

    assert [b.id for b in service.listed(database, instance_id)] == [row.id]


def test_a_gateway_that_is_not_running_gives_a_failed_backup_and_stores_nothing(
    box, hcloud_client, database, backup_settings, backup_store
):
    server = FakeServer(box, hcloud_client, "claw-nobackup")  # bootstrapped, nothing deployed
    instance_id = customer(database, server, "nobackup")
    row = service.create(backup_settings, database, instance_id, Kind.MANUAL)
    assert row.status == "failed" and row.object_key is None
    assert "create failed on the server" in row.message and "docker-compose.yml: no such file" in row.message
    assert backup_store.keys(f"instances/{instance_id}/") == []

    # The nightly pass tries it too, fails, and tells the operators once a day.
    with database.sessions() as session:
        session.add(User(email="ops@example.com", role="admin", email_verified=True, name="Ops"))
        session.commit()
    report = nightly.run(backup_settings, database, store=backup_store)
    assert report.failed == [instance_id] and report.made == []
    assert nightly.run(backup_settings, database, store=backup_store).failed == []  # done for tonight
    with database.sessions() as session:
        [alert] = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "backups_failed")).all()
    assert alert.to_address == "ops@example.com" and "nobackup" in alert.text_body
    assert alert.subject.startswith("Nightly backups need attention on") and alert.subject.endswith("(1)")
    assert "failed on" in alert.text_body and "without a nightly backup" not in alert.text_body

    paused = customer(database, None, "paused")
    with pytest.raises(service.BackupError) as refused:
        service.create(backup_settings, database, paused, Kind.MANUAL)
    assert refused.value.code == "instance_not_running"


def test_retention_deletes_exactly_what_the_policy_drops_and_final_backups_expire(
    database, backup_settings, backup_store, tmp_path
):
    instance_id = customer(database, None, "keeper")
    now = utcnow()
    payload = tmp_path / "object"
    payload.write_bytes(b"sealed")
    with database.sessions() as session:
        for day in range(60):
            backup_id = f"bk_night{day}"
            started = now - timedelta(days=day, hours=1)
            key = service.object_key(instance_id, backup_id)
            session.add(Backup(id=backup_id, instance_id=instance_id, kind="nightly", status="succeeded"))
            session.flush()
            row = session.get(Backup, backup_id)
            row.started_at, row.object_key = started, key
        final = Backup(id="bk_final", instance_id=instance_id, kind="final", status="succeeded")
        final.expires_at, final.started_at = now + timedelta(days=30), now - timedelta(days=90)
        final.object_key = service.object_key(instance_id, final.id)
        failed = Backup(instance_id=instance_id, kind="nightly", status="failed")
        failed.started_at = now - timedelta(days=40)
        session.add_all([final, failed])
        session.commit()
        rows = session.scalars(select(Backup).where(Backup.status == "succeeded")).all()
        for row in rows:
            backup_store.upload(row.object_key, payload, {})
        expected_kept = retention.to_keep((r.id, r.started_at) for r in rows if r.kind == "nightly")

    deleted = service.prune(backup_settings, database, instance_id, store=backup_store, now=now)
    assert len(deleted) == 60 - len(expected_kept) and 7 < len(expected_kept) <= 14
    left = {b.id for b in service.listed(database, instance_id)}
    assert left == expected_kept | {final.id}  # the failed row is a month old: gone too
    assert sorted(backup_store.keys(f"instances/{instance_id}/")) == sorted(
        service.object_key(instance_id, i) for i in left
    )

    # Once the destroyed instance's final backup expires, it goes too.
    service.prune(backup_settings, database, instance_id, store=backup_store, now=now + timedelta(days=31))
    assert final.id not in {b.id for b in service.listed(database, instance_id)}
    assert final.object_key not in backup_store.keys(f"instances/{instance_id}/")


def test_operators_list_create_verify_and_export_from_the_command_line(
    box, hcloud_client, database, database_url, backup_settings, tmp_path
):
    server = FakeServer(box, hcloud_client, "claw-cli")
    assert server.deploy("token-1", "0123abcd").status == 0
    (server.volume_folder / "state/memory.md").write_text("kept by the operator")
    customer(database, server, "cli")
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": database_url,
        "CLAWDET_DATA_DIR": str(backup_settings.data_dir),
        "SECRET_KEY": "test-secret",
        "CREDENTIALS_ROOT": "test-credentials-root",
        "INSTANCE_SSH_PRIVATE_KEY": backup_settings.instance_ssh_private_key,
        "INSTANCE_SSH_PORT": str(box.ssh_port),
        "LOG_FORMAT": "console",
        **backup_env(box.s3),
    }

    def clawdet(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "clawdet.cli", "backups", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )

    made = clawdet("create", "cli")
    assert made.returncode == 0 and " manual " in made.stdout and "succeeded" in made.stdout, made.stderr
    assert box.s3.secret_access_key not in made.stdout + made.stderr
    [listed] = [json.loads(line) for line in clawdet("list", "cli", "--json").stdout.splitlines()]
    assert listed["status"] == "succeeded" and listed["verified"] is True and listed["size"] > 0
    assert clawdet("verify", listed["id"]).returncode == 0

    exported = tmp_path / "cli.tar.gz"
    assert clawdet("export", listed["id"], str(exported)).returncode == 0
    assert oct(exported.stat().st_mode & 0o777) == "0o600"
    assert b"kept by the operator" in members(exported).values()
    refused = clawdet("export", listed["id"], str(exported))
    assert refused.returncode == 1 and "exists" in refused.stderr
    unknown = clawdet("list", "nobody")
    assert unknown.returncode == 1 and "No instance is called 'nobody'" in unknown.stderr


def test_a_failed_or_missed_nightly_backup_shows_in_the_metrics_and_the_admin_console(
    database, client, make_client
):
    now = utcnow()
    ids = {name: customer(database, None, name) for name in ("missed", "failing", "fine", "new")}
    with database.sessions() as session:
        for name, ready in (("missed", 48), ("failing", 48), ("fine", 48), ("new", 1)):
            session.get(Instance, ids[name]).ready_at = now - timedelta(hours=ready)
        for name, status, hours in (
            ("failing", "succeeded", 30),
            ("failing", "failed", 5),
            ("fine", "succeeded", 2),
        ):
            row = Backup(instance_id=ids[name], kind="nightly", status=status)
            row.started_at = now - timedelta(hours=hours)
            session.add(row)
        session.commit()
        health = nightly.backup_health(session, now=now)
    assert (health.failed, health.missing) == (["failing"], ["missed"])

    families = scrape(client)
    assert value(families["clawdet_backup_alerts"], "clawdet_backup_alerts", problem="failed") == 1
    assert value(families["clawdet_backup_alerts"], "clawdet_backup_alerts", problem="missing") == 1
    assert value(families["clawdet_backups"], "clawdet_backups", kind="nightly", status="succeeded") == 2

    admin = make_client()
    make_admin(database, admin)
    console = admin.get("/admin/").get_data(as_text=True)
    section = console[console.index('id="backups"') :]
    assert "1 instance(s) whose last nightly backup failed, 1 without one for 36 hours" in section
    assert "failing" in section and "missed" in section
    detail = admin.get(f"/admin/instances/{ids['failing']}").get_data(as_text=True)
    assert detail.count("<td>nightly</td>") == 2 and "<td>failed" in detail
