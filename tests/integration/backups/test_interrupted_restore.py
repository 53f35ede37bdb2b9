"""A restore whose worker died mid-way (killed, host lost) left the server half-swapped, with the
gateway stopped and its request `running`: the next worker puts the previous state back, starts
the gateway and fails the request. A restore that loses its hold stops and leaves the server to
the recovery that took it over."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest

from clawdet.backups import hold, remote, remote_restore, restore, service
from clawdet.backups import requests as backup_requests
from clawdet.backups.service import Kind
from db.models import BackupRequest, Instance, utcnow
from programs.cloud_init import STATE_ON_VOLUME
from tests.fixtures.backups import FakeServer, customer
from tests.integration.backups.test_restore import sandbox_target

pytestmark = pytest.mark.postgres

DEAD_WORKER = "worker-gone:4242"


class WorkerKilled(BaseException):
    """The worker dies: nothing of it runs any more, no rollback either."""


@pytest.fixture
def deployed(box, hcloud_client, database, backup_settings):
    """A server whose state says "penguin", with a backup of it saying "pelican"."""
    server = FakeServer(box, hcloud_client, "claw-interrupted")
    assert server.deploy("token-1", "0123abcd").status == 0
    instance_id = customer(database, server, "interrupted")
    state = server.volume_folder / "state"
    (state / "memory.md").write_text("pelican")
    saved = service.create(backup_settings, database, instance_id, Kind.MANUAL)
    assert saved.status == "succeeded", saved.message
    (state / "memory.md").write_text("penguin")
    return server, instance_id, saved.id


def killed_mid_restore(monkeypatch, box, database, settings, instance_id, backup_id) -> str:
    """Runs the restore until it fails on the server, and kills its worker instead of rolling back;
    leaves its request `running` and its hold lapsed, as a dead worker does. Returns the request."""
    with monkeypatch.context() as patched:
        patched.setattr(remote_restore, "_roll_back", lambda *args: (_ for _ in ()).throw(WorkerKilled()))
        with pytest.raises(WorkerKilled):
            restore.restore(settings, database, instance_id, backup_id, target=sandbox_target(box))
    with database.sessions() as session:
        stuck = BackupRequest(
            instance_id=instance_id,
            action="restore",
            backup_id=backup_id,
            status="running",
            progress=60,
            message="Restoring it on your server and starting your assistant on it",
            owner=DEAD_WORKER,
            started_at=utcnow() - timedelta(minutes=15),
        )
        session.add(stuck)
        instance = session.get(Instance, instance_id)
        instance.lease_owner = f"{hold.PREFIX}{DEAD_WORKER}:1"
        instance.lease_expires_at = utcnow() - 2 * hold.LEASE - timedelta(seconds=5)
        session.commit()
        return stuck.id


def staged(server) -> list[str]:
    folder = server.volume_folder / "clawdet-restore"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def assert_recovered(box, server, database, request_id: str) -> None:
    assert (server.volume_folder / "state" / "memory.md").read_text() == "penguin"
    assert box.gateway_state(server.server.id) == "up" and server.status("token-1") == 200
    assert not [name for name in staged(server) if name.startswith("previous-")]
    with database.sessions() as session:
        row = session.get(BackupRequest, request_id)
        assert (row.status, row.message, row.progress) == ("failed", backup_requests.INTERRUPTED, 0)
        assert row.finished_at is not None
        assert session.get(Instance, row.instance_id).lease_owner is None


def test_a_restore_killed_between_its_two_renames_is_put_back(
    box, deployed, database, backup_settings, monkeypatch
):
    """The state folder was moved aside, the restored one never put in place: no state folder."""
    server, instance_id, backup_id = deployed
    box.faults.add(
        service="ssh",
        method="EXEC",
        path=f"mv -T {remote_restore.STAGING}/* {STATE_ON_VOLUME}",
        status=1,
        fail_next=1,
    )
    request_id = killed_mid_restore(monkeypatch, box, database, backup_settings, instance_id, backup_id)
    assert not (server.volume_folder / "state").exists()
    assert [name for name in staged(server) if name.startswith("previous-")]
    assert box.gateway_state(server.server.id) != "up"

    assert backup_requests.run_next(backup_settings, database) is None
    assert_recovered(box, server, database, request_id)


def test_a_restore_killed_before_its_gateway_was_confirmed_healthy_is_put_back(
    box, deployed, database, backup_settings, monkeypatch
):
    """The restored state is live and the gateway runs on it, but it was never found healthy."""
    server, instance_id, backup_id = deployed
    monkeypatch.setattr(restore, "wait_healthy", lambda url, deadline: SimpleNamespace(ok=False))
    request_id = killed_mid_restore(monkeypatch, box, database, backup_settings, instance_id, backup_id)
    assert (server.volume_folder / "state" / "memory.md").read_text() == "pelican"
    assert box.gateway_state(server.server.id) == "up"

    assert backup_requests.run_next(backup_settings, database) is None
    assert_recovered(box, server, database, request_id)
    assert staged(server) == []  # the unconfirmed restored state went once the previous was back


def test_an_unreachable_server_is_recovered_on_a_later_pass(
    box, deployed, database, backup_settings, monkeypatch, caplog
):
    server, instance_id, backup_id = deployed
    box.faults.add(service="ssh", method="EXEC", path="docker compose * up *", status=1, fail_next=1)
    request_id = killed_mid_restore(monkeypatch, box, database, backup_settings, instance_id, backup_id)
    with database.sessions() as session:
        session.get(Instance, instance_id).ipv4 = "127.254.254.254"  # nothing answers there
        session.commit()

    with caplog.at_level(logging.WARNING, logger=backup_requests.__name__):
        assert backup_requests.run_next(backup_settings, database) is None
        assert backup_requests.run_next(backup_settings, database) is None
    assert len([r for r in caplog.records if "not recovered yet" in r.getMessage()]) == 1  # no spinning
    with database.sessions() as session:
        assert session.get(BackupRequest, request_id).status == "running"
        instance = session.get(Instance, instance_id)
        assert instance.lease_owner.startswith(hold.PREFIX)  # the recovery's hold, left to lapse
        instance.ipv4 = server.ip
        instance.lease_expires_at = utcnow() - 2 * hold.LEASE - timedelta(seconds=5)
        session.commit()

    assert backup_requests.run_next(backup_settings, database) is None
    assert_recovered(box, server, database, request_id)


def test_a_restore_that_loses_its_hold_stops_before_the_swap_and_leaves_the_server_to_its_recovery(
    box, deployed, database, backup_settings, monkeypatch
):
    server, instance_id, backup_id = deployed
    checked = remote_restore._is_real_folder

    async def hold_taken_meanwhile(*args):
        with database.sessions() as session:  # the hold lapsed and a recovery took the instance
            instance = session.get(Instance, instance_id)
            instance.lease_owner = "restore:worker-2:recovery"
            instance.lease_expires_at = utcnow() + timedelta(minutes=5)
            session.commit()
        return await checked(*args)

    monkeypatch.setattr(remote_restore, "_is_real_folder", hold_taken_meanwhile)
    with pytest.raises(service.BackupError) as failed:
        restore.restore(backup_settings, database, instance_id, backup_id, target=sandbox_target(box))

    assert failed.value.code == "restore_failed" and "lost its hold" in failed.value.message
    assert (server.volume_folder / "state" / "memory.md").read_text() == "penguin"  # never swapped
    with database.sessions() as session:
        instance = session.get(Instance, instance_id)
        assert instance.lease_owner == "restore:worker-2:recovery"  # not ours to let go
        address = instance.ipv4
    assert box.gateway_state(server.server.id) != "up"  # this worker touched the server no more

    # The recovery that took the hold over puts it right.
    key = backup_settings.instance_ssh_private_key
    remote_restore.recover(remote.Server(address, service.ssh_port(backup_settings), key))
    assert box.gateway_state(server.server.id) == "up" and server.status("token-1") == 200
    assert (server.volume_folder / "state" / "memory.md").read_text() == "penguin" and staged(server) == []
