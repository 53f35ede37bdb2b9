"""Restore in place on a fake server: the chosen backup's state comes back through OpenClaw's own
`backup restore`, the state it replaced is kept as a `pre_restore` backup, and a restore that
fails on the way leaves the gateway running on its previous state."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from clawdet import cloud
from clawdet.backups import remote_restore, restore, service
from clawdet.backups.service import Kind
from db.models import Instance, utcnow
from tests.fixtures.backups import FakeServer, customer, members
from tests.fixtures.cloud import unreached_target

pytestmark = pytest.mark.postgres


def sandbox_target(box) -> cloud.CloudTarget:
    return unreached_target(
        base_domain=box.zone_name,
        health_url_template=f"http://{{ipv4}}:{box.gateway_port}/healthz",
        ssh_port=box.ssh_port,
    )


@pytest.fixture
def deployed(box, hcloud_client, database):
    server = FakeServer(box, hcloud_client, "claw-restore")
    assert server.deploy("token-1", "0123abcd").status == 0
    return server, customer(database, server, "restore")


def test_a_restore_brings_the_old_state_back_and_keeps_the_one_it_replaced(
    box, deployed, database, backup_settings, tmp_path
):
    server, instance_id = deployed
    state = server.volume_folder / "state"
    (state / "memory.md").write_text("pelican")
    saved = service.create(backup_settings, database, instance_id, Kind.MANUAL)
    assert saved.status == "succeeded", saved.message

    (state / "memory.md").write_text("penguin")
    (state / "new-since.md").write_text("made after the backup")
    done = restore.restore(backup_settings, database, instance_id, saved.id, target=sandbox_target(box))

    assert (state / "memory.md").read_text() == "pelican"
    assert not (state / "new-since.md").exists()
    assert box.gateway_state(server.server.id) == "up" and server.status("token-1") == 200
    assert not list((server.volume_folder / "clawdet-restore").iterdir())  # nothing left staged
    with database.sessions() as session:
        assert session.get(Instance, instance_id).lease_owner is None  # the restore's hold is let go

    before = service.download(backup_settings, database, done.pre_restore_backup_id, tmp_path / "before.tgz")
    assert before.kind == "pre_restore"
    assert b"penguin" in members(tmp_path / "before.tgz").values()


def test_a_restore_that_fails_leaves_the_previous_state_running(box, deployed, database, backup_settings):
    server, instance_id = deployed
    state = server.volume_folder / "state"
    (state / "memory.md").write_text("pelican")
    saved = service.create(backup_settings, database, instance_id, Kind.MANUAL)
    (state / "memory.md").write_text("penguin")

    # A worker holds the instance: no restore now.
    with database.sessions() as session:
        row = session.get(Instance, instance_id)
        row.lease_owner, row.lease_expires_at = "worker-1", utcnow() + timedelta(minutes=1)
        session.commit()
    with pytest.raises(service.BackupError) as busy:
        restore.restore(backup_settings, database, instance_id, saved.id, target=sandbox_target(box))
    assert busy.value.code == "instance_busy" and (state / "memory.md").read_text() == "penguin"
    with database.sessions() as session:
        session.get(Instance, instance_id).lease_owner = None
        session.get(Instance, instance_id).lease_expires_at = None
        session.commit()

    # The gateway refuses to start on the restored state once; the rollback's start works.
    box.faults.add(service="ssh", method="EXEC", path="docker compose * up *", status=1, fail_next=1)
    with pytest.raises(service.BackupError) as failed:
        restore.restore(backup_settings, database, instance_id, saved.id, target=sandbox_target(box))
    assert failed.value.code == "restore_failed"
    assert "start the gateway on the restored state failed" in failed.value.message
    assert (state / "memory.md").read_text() == "penguin"
    assert box.gateway_state(server.server.id) == "up" and server.status("token-1") == 200
    assert not list((server.volume_folder / "clawdet-restore").iterdir())


def test_the_restored_state_must_be_a_folder_reached_through_no_link(box, deployed, backup_settings):
    """The archive is the customer's: a state folder that is a link (or lies under one) would move
    whatever it points at into place, so it is refused."""
    server, _ = deployed
    staged = server.volume_folder / "clawdet-restore"
    (staged / "real" / "state").mkdir(parents=True)
    (staged / "elsewhere" / "state").mkdir(parents=True)
    (staged / "linked").mkdir()
    (staged / "linked" / "state").symlink_to("../elsewhere/state")
    (staged / "under-a-link").symlink_to("elsewhere")
    (staged / "a-file").mkdir()
    (staged / "a-file" / "state").write_text("not a folder")
    remote = service.remote.Server(server.ip, box.ssh_port, backup_settings.instance_ssh_private_key)

    async def checks() -> dict[str, bool]:
        async with await service.remote.connect(remote) as connection:
            names = ("real", "linked", "under-a-link", "a-file", "missing")
            staging = remote_restore.STAGING
            return {n: await remote_restore._is_real_folder(connection, staging, f"{n}/state") for n in names}

    found = asyncio.run(checks())
    assert found == {"real": True, "linked": False, "under-a-link": False, "a-file": False, "missing": False}
