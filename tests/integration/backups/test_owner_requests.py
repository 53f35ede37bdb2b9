"""The owner's side: the API lists an instance's backups and queues a restore or an export, which
a worker (holding the backup keys the web app lacks) carries out; an export ends in a
time-limited link to the decrypted archive."""

from __future__ import annotations

import base64
import dataclasses
from urllib.parse import urlsplit

import pytest

from clawdet.backups import export, service
from clawdet.backups import requests as backup_requests
from clawdet.backups.service import Kind
from clawdet.settings import Settings
from db.models import BackupRequest, Instance, User
from tests.fixtures.backups import FakeServer, members, ready_instance
from tests.fixtures.database import register

pytestmark = pytest.mark.postgres


@pytest.fixture
def worker_settings(backup_settings, box, settings) -> Settings:
    """As a worker has them: the cloud (here the sandbox's gateway address to probe) too, and the
    web app's SECRET_KEY (export links are sealed with it)."""
    cloud_env = {
        "HCLOUD_TOKEN": "unused",
        "CLOUDFLARE_API_TOKEN": "unused",
        "CLOUDFLARE_ZONE_ID": "unused",
        "HEALTH_URL_TEMPLATE": f"http://{{ipv4}}:{box.gateway_port}/healthz",
    }
    return dataclasses.replace(backup_settings, cloud_env=cloud_env, secret_key=settings.secret_key)


def test_owner_lists_exports_and_restores_through_the_api(
    box, hcloud_client, database, client, make_client, worker_settings, tmp_path
):
    user = register(client)
    server = FakeServer(box, hcloud_client, "claw-owner")
    assert server.deploy("token-1", "0123abcd").status == 0
    state = server.volume_folder / "state"
    (state / "memory.md").write_text("pelican")
    instance_id = ready_instance(database, user["id"], server, "owner")
    base = f"/api/instances/{instance_id}"
    assert client.post(f"{base}/export", json={}).get_json()["error"]["code"] == "backup_not_found"

    saved = service.create(worker_settings, database, instance_id, Kind.MANUAL)
    [listed] = client.get(f"{base}/backups").get_json()["backups"]
    assert listed["id"] == saved.id and listed["verified"] is True and listed["size"] == saved.size

    exporting = client.post(f"{base}/export", json={})
    assert exporting.status_code == 202, exporting.get_json()
    assert client.post(f"{base}/restore", json={}).status_code == 409  # one at a time
    done = backup_requests.run_next(worker_settings, database)
    assert done.status == "done", done.message
    polled = client.get(exporting.headers["Location"]).get_json()["request"]
    assert polled["status"] == "done" and polled["link_expires_at"]
    archive = tmp_path / "export.tar.gz"
    archive.write_bytes(client.get(urlsplit(polled["link"]).path).data)
    assert b"pelican" in members(archive).values()
    # The link's key is sealed in its token: the database keeps no usable key.
    token = polled["link"].rsplit("/", 1)[1]
    export_key = export.opened_token(worker_settings.secret_key, token).key
    with database.sessions() as session:
        stored = session.get(BackupRequest, polled["id"]).link
    assert stored == polled["link"] and base64.urlsafe_b64encode(export_key).decode() not in stored

    (state / "memory.md").write_text("penguin")
    restoring = client.post(f"{base}/restore", json={"backup": saved.id})
    assert restoring.status_code == 202, restoring.get_json()
    assert backup_requests.run_next(worker_settings, database).status == "done"
    assert (state / "memory.md").read_text() == "pelican"
    assert client.get(restoring.headers["Location"]).get_json()["request"]["message"].startswith("Restored")
    assert backup_requests.run_next(worker_settings, database) is None

    # Someone else sees none of it.
    stranger = make_client()
    register(stranger, email="mallory@example.com", name="Mallory")
    assert stranger.get(f"{base}/backups").status_code == 404
    assert stranger.post(f"{base}/restore", json={"backup": saved.id}).status_code == 404
    assert stranger.get(restoring.headers["Location"]).status_code == 404
    with database.sessions() as session:
        assert session.get(User, user["id"]) is not None


def test_the_dashboard_restores_an_earlier_instances_backup_into_the_new_one_with_progress(
    box, hcloud_client, database, client, make_client, worker_settings
):
    """The owner removed an instance and made a new one: its backup (kept after the destroy) is
    on the new one's dashboard, and restoring it there brings the old assistant's state back."""
    user = register(client)
    old = FakeServer(box, hcloud_client, "claw-before")
    assert old.deploy("token-1", "0123abcd").status == 0
    (old.volume_folder / "state" / "memory.md").write_text("pelican")
    old_id = ready_instance(database, user["id"], old, "before")
    kept = service.create(worker_settings, database, old_id, Kind.FINAL)
    assert kept.status == "succeeded", kept.message
    with database.session() as session:
        gone = session.get(Instance, old_id)
        gone.status = gone.desired_state = "destroyed"
    new = FakeServer(box, hcloud_client, "claw-after")
    assert new.deploy("token-2", "4567cdef").status == 0
    (new.volume_folder / "state" / "memory.md").write_text("a fresh start")
    new_id = ready_instance(database, user["id"], new, "after")

    page = client.get("/dashboard").get_data(as_text=True)
    assert "From your earlier instances" in page and f'data-backup="{kept.id}"' in page
    assert "No backup yet" in page  # the new instance has none of its own yet
    queued = client.post(f"/dashboard/instance/{new_id}/backups/restore", data={"backup": kept.id})
    assert queued.status_code == 303 and queued.headers["Location"].endswith("/dashboard#backups")
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'id="backup-progress"' in page and "Your restore is queued" in page

    done = backup_requests.run_next(worker_settings, database)
    assert done.status == "done" and done.progress == 100, done.message
    assert (new.volume_folder / "state" / "memory.md").read_text() == "pelican"
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'id="backup-outcome"' in page and "Restored" in page and 'id="backup-progress"' not in page

    # Another owner cannot pull this backup into their own instance.
    stranger = make_client()
    mallory = register(stranger, email="mallory@example.com", name="Mallory")
    theirs_id = ready_instance(database, mallory["id"], None, "theirs")
    refused = stranger.post(f"/api/instances/{theirs_id}/restore", json={"backup": kept.id})
    assert refused.status_code == 404 and refused.get_json()["error"]["code"] == "backup_not_found"
