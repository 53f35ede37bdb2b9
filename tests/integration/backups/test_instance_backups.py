"""Backups of a real instance (real engine, stand-in plugins, sandbox, the real OpenClaw gateway
and its own backup commands, the sandbox's S3 server): back up, change the assistant's state,
restore, the old state is back; destroy keeps a final backup that outlives the instance, then
retention deletes it with the rest."""

import secrets
from datetime import timedelta

import pytest

from clawdet.backups import nightly, restore, service
from clawdet.backups.service import Kind
from clawdet.instances.requests import request_destroy
from clawdet.reconciler.reconciler import Reconciler
from clawdet.settings import Settings
from db.models import Instance, utcnow
from sandbox import openclaw as openclaw_install
from tests.fixtures.backups import backup_env, members
from tests.fixtures.provisioning import FAST, instance, new_instance
from tests.integration.reconciler.test_data_volume import chat

pytestmark = [pytest.mark.engine, pytest.mark.postgres]


@pytest.fixture
def cloud_sandbox(tmp_path):
    """This module's fake servers run the real OpenClaw gateway."""
    from sandbox import Sandbox

    if openclaw_install.find() is None:
        pytest.fail("OpenClaw is not installed for the sandbox: run `make openclaw` (make test does that).")
    with Sandbox(
        tmp_path / "sandbox" / "state.json",
        boot_delay=0.3,
        action_delay=0.05,
        real_gateways=1,
        server_network="127.41.0.0/16",
    ) as box:
        yield box


@pytest.fixture
def settings(prov_env, cloud_sandbox) -> Settings:
    roots = {name: secrets.token_urlsafe(32) for name in ("CREDENTIALS_ROOT", "GATEWAY_TOKEN_ROOT")}
    return Settings.from_env({**roots, **prov_env, **backup_env(cloud_sandbox.s3)}, dotenv=False)


def test_back_up_change_restore_destroy(settings, prov_db, cloud_sandbox, tmp_path):
    reconciler = Reconciler(settings, prov_db, config=FAST)
    instance_id = new_instance(prov_db, settings, "saver")
    assert reconciler.drain() == 1
    ready = instance(prov_db, instance_id)
    assert ready.status == "ready", ready.status_message

    chat(ready, settings, "remember the word pelican")
    saved = service.create(settings, prov_db, instance_id, Kind.MANUAL)
    assert saved.status == "succeeded" and saved.verified, saved.message + saved.verify_message

    chat(ready, settings, "now also remember walrus")
    assert "walrus" in cloud_sandbox.llm.completions()[-1].conversation
    done = restore.restore(settings, prov_db, instance_id, saved.id)
    chat(ready, settings, "which words do you know?")  # the gateway replays its restored session
    conversation = cloud_sandbox.llm.completions()[-1].conversation
    assert "pelican" in conversation and "walrus" not in conversation

    # The state the restore replaced is a backup too, and holds the later message.
    service.download(settings, prov_db, done.pre_restore_backup_id, tmp_path / "before.tar.gz")
    assert any(b"walrus" in data for data in members(tmp_path / "before.tar.gz").values())

    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        request_destroy(session, row.user, row)
    assert reconciler.drain() == 1
    assert instance(prov_db, instance_id).status == "destroyed"
    assert cloud_sandbox.inventory()["servers"] == []
    [final] = [b for b in service.listed(prov_db, instance_id) if b.kind == "final"]
    assert final.status == "succeeded", final.message
    assert timedelta(days=29) < final.expires_at - utcnow() <= timedelta(days=30)
    service.download(settings, prov_db, final.id, tmp_path / "final.tar.gz")
    assert any(b"pelican" in data for data in members(tmp_path / "final.tar.gz").values())

    # The nightly pass deletes a destroyed instance's other backups, and the final one once it expires.
    nightly.run(settings, prov_db)
    assert [b.kind for b in service.listed(prov_db, instance_id)] == ["final"]
    nightly.run(settings, prov_db, now=utcnow() + timedelta(days=31))
    assert service.listed(prov_db, instance_id) == []
    assert service.store_for(settings).keys(f"instances/{instance_id}/") == []
