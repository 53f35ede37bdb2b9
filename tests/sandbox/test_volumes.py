"""Hetzner volumes in the sandbox, driven by the official `hcloud` Python SDK: create, attach,
detach, resize, protection, labels, and the real API's errors."""

from __future__ import annotations

import pytest
from hcloud import APIException, Client
from hcloud.locations import Location
from hcloud.servers import Server
from hcloud.volumes import Volume

from tests.sandbox.test_hetzner import create_server, raw


def wait(response) -> None:
    response.action.wait_until_finished()
    for action in response.next_actions or []:
        action.wait_until_finished()


def test_create_attach_resize_detach_delete(sandbox, hcloud_client: Client):
    server = create_server(hcloud_client, "claw-vol").server
    created = hcloud_client.volumes.create(
        size=10, name="claw-vol-data", location=Location(name="fsn1"), format="ext4", labels={"a": "b"}
    )
    assert created.action.command == "create_volume" and created.volume.status == "creating"
    wait(created)
    volume = hcloud_client.volumes.get_by_id(created.volume.id)
    assert volume.status == "available" and volume.size == 10 and volume.format == "ext4"
    assert volume.location.name == "fsn1" and volume.labels == {"a": "b"} and volume.server is None
    assert volume.linux_device == f"/dev/disk/by-id/scsi-0HC_Volume_{volume.id}"

    volume.attach(Server(id=server.id), automount=False).wait_until_finished()
    volume = hcloud_client.volumes.get_by_id(volume.id)
    assert volume.server.id == server.id
    assert hcloud_client.servers.get_by_id(server.id).volumes[0].id == volume.id
    assert hcloud_client.volumes.get_all(label_selector="a=b")[0].id == volume.id

    volume.resize(20).wait_until_finished()
    with pytest.raises(APIException) as shrink:
        volume.resize(15)
    assert shrink.value.code == "invalid_input"
    assert hcloud_client.volumes.get_by_id(volume.id).size == 20

    with pytest.raises(APIException) as busy:
        volume.delete()  # attached: detach first
    assert busy.value.code == "invalid_input"
    with pytest.raises(APIException) as twice:
        volume.attach(Server(id=server.id))
    assert twice.value.code == "volume_already_attached"

    volume.detach().wait_until_finished()
    assert hcloud_client.volumes.get_by_id(volume.id).server is None
    volume.change_protection(delete=True).wait_until_finished()
    with pytest.raises(APIException) as protected:
        volume.delete()
    assert protected.value.code == "protected"
    volume.change_protection(delete=False).wait_until_finished()
    volume.update(name="renamed", labels={"c": "d"})
    assert hcloud_client.volumes.get_by_id(volume.id).name == "renamed"
    assert volume.delete() is True
    with pytest.raises(APIException) as gone:
        hcloud_client.volumes.get_by_id(volume.id)
    assert gone.value.code == "not_found"


def test_a_volume_created_for_a_server_lives_in_its_location_and_outlives_it(sandbox, hcloud_client: Client):
    server = create_server(hcloud_client, "claw-outlive").server
    created = hcloud_client.volumes.create(
        size=10, name="outlive-data", server=Server(id=server.id), automount=False
    )
    wait(created)
    volume = hcloud_client.volumes.get_by_id(created.volume.id)
    assert volume.server.id == server.id and volume.location.name == "fsn1"
    data = sandbox.store.path.parent / "volumes" / str(volume.id)
    (data / "kept.txt").write_text("the customer's")

    hcloud_client.servers.delete(Server(id=server.id)).wait_until_finished()
    assert hcloud_client.volumes.get_by_id(volume.id).server is None  # detached, not deleted
    assert (data / "kept.txt").read_text() == "the customer's"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"size": 5, "name": "tiny", "location": Location(name="fsn1")}, "size"),
        ({"size": 10, "name": "badfmt", "location": Location(name="fsn1"), "format": "ntfs"}, "format"),
    ],
)
def test_invalid_volumes_are_refused_with_the_field_named(hcloud_client: Client, arguments, field):
    with pytest.raises(APIException) as refused:
        hcloud_client.volumes.create(**arguments)
    assert refused.value.code == "invalid_input"
    assert field in refused.value.details["fields"][0]["name"]


def test_a_volume_needs_a_location_or_a_server(sandbox):
    """The SDK refuses this itself; the API answers it too."""
    answer = raw(sandbox, "POST", "/volumes", json={"size": 10, "name": "nowhere"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_input"
    assert answer.json()["error"]["details"]["fields"][0]["name"] == "location"


def test_a_volume_attaches_only_in_its_own_location(hcloud_client: Client):
    server = create_server(hcloud_client, "claw-far").server  # fsn1
    created = hcloud_client.volumes.create(size=10, name="far-data", location=Location(name="hel1"))
    wait(created)
    with pytest.raises(APIException) as far:
        hcloud_client.volumes.attach(Volume(id=created.volume.id), Server(id=server.id))
    assert far.value.code == "invalid_input"
