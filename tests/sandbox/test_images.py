"""Snapshots in the sandbox, driven by the official `hcloud` SDK (create_image, list by type and
label selector, a server from a snapshot by id, delete), and the realistic clock deciding from
what a server's user_data and image really ask for."""

from __future__ import annotations

import time

import pytest
import yaml
from hcloud import APIException, Client
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType

from programs import cloud_init as program_cloud_init
from programs import ssh_keys
from tests.fixtures.sandbox import start_sandbox
from tests.sandbox.test_hetzner import create_server


def _bootstrap_without_volume() -> str:
    """The platform's bootstrap user_data, without its volume (so the boot waits for none)."""
    document = yaml.safe_load(
        program_cloud_init.render_user_data(
            ssh_public_key=ssh_keys.public_key(ssh_keys.generate()),
            data_device="/dev/disk/by-id/scsi-0HC_Volume_9",
        )
    )
    document.pop("mounts")
    return "#cloud-config\n" + yaml.safe_dump(document)


BOOTSTRAP = _bootstrap_without_volume()


def _configure_only(user_data: str) -> str:
    """What an instance on a golden image asks for: no package stage (SOFTWARE_KEYS left out)."""
    document = yaml.safe_load(user_data)
    for key in program_cloud_init.SOFTWARE_KEYS:
        document.pop(key)
    return "#cloud-config\n" + yaml.safe_dump(document)


def test_create_image_list_by_label_boot_from_it_and_delete(sandbox, hcloud_client: Client):
    builder = create_server(hcloud_client, "golden-builder").server
    made = hcloud_client.servers.create_image(
        builder, description="openclaw 2026.9.6 fsn1", type="snapshot", labels={"clawdet/golden": "2026.9.6"}
    )
    assert made.action.command == "create_image" and made.image.status == "creating"
    assert made.image.type == "snapshot" and made.image.created_from.id == builder.id
    with pytest.raises(APIException) as busy:
        hcloud_client.servers.power_off(builder)  # the create_image action locks the server
    assert busy.value.code == "locked"
    made.action.wait_until_finished()

    found = hcloud_client.images.get_all(type="snapshot", label_selector="clawdet/golden=2026.9.6")
    assert [i.id for i in found] == [made.image.id] and found[0].status == "available"
    assert found[0].description == "openclaw 2026.9.6 fsn1" and found[0].architecture == "x86"
    assert hcloud_client.images.get_all(type="snapshot", label_selector="clawdet/golden=other") == []
    assert all(i.type == "system" for i in hcloud_client.images.get_all(type="system"))

    hcloud_client.servers.delete(builder).wait_until_finished()
    instance = hcloud_client.servers.create(
        name="from-golden", server_type=ServerType(name="cx22"), image=Image(id=made.image.id)
    ).server
    assert hcloud_client.servers.get_by_id(instance.id).image.id == made.image.id

    hcloud_client.images.update(Image(id=made.image.id), labels={"clawdet/golden": "old"})
    assert hcloud_client.images.get_by_id(made.image.id).labels == {"clawdet/golden": "old"}
    hcloud_client.images.delete(Image(id=made.image.id))
    with pytest.raises(APIException) as gone:
        hcloud_client.images.get_by_id(made.image.id)
    assert gone.value.code == "not_found"
    with pytest.raises(APIException) as stock:
        hcloud_client.images.delete(hcloud_client.images.get_by_name_and_architecture("ubuntu-24.04", "x86"))
    assert stock.value.code == "forbidden"


def _boot_seconds(sandbox, client: Client, name: str, image: Image, user_data: str) -> float:
    """Profile seconds from "create" to cloud-init done."""
    started = time.monotonic()
    server = client.servers.create(
        name=name,
        server_type=ServerType(name="cx22"),
        image=image,
        location=Location(name="fsn1"),
        user_data=user_data,
    ).server
    while next(s for s in sandbox.inventory()["servers"] if s["id"] == server.id)["boot"] != "done":
        time.sleep(0.02)
    return sandbox.clock.profile_seconds(time.monotonic() - started)


def test_realistic_clock_installs_docker_on_a_stock_image_but_not_on_its_snapshot(tmp_path):
    box = start_sandbox(tmp_path / "state.json", clock="hetzner", time_scale=40)
    try:
        client = Client(token=box.hcloud_token, api_endpoint=box.hcloud_url, poll_interval=0.02)
        stock = _boot_seconds(box, client, "stock", Image(name="ubuntu-24.04"), BOOTSTRAP)
        # create 10 + boot 20 + apt-get update 12 + docker.io 45 + docker-compose-v2 6 = 93
        assert 90 <= stock <= 110, stock
        server = client.servers.get_by_name("stock")
        made = client.servers.create_image(server, labels={"golden": "yes"})
        made.action.wait_until_finished()
        # the same recipe on the snapshot: the packages are there, the index refresh is not skipped
        again = _boot_seconds(box, client, "again", Image(id=made.image.id), BOOTSTRAP)
        # still listing the packages (without package_update) pays for the refresh too
        listed = BOOTSTRAP.replace("package_update: true", "package_update: false")
        assert listed != BOOTSTRAP
        _boot_seconds(box, client, "listed", Image(id=made.image.id), listed)
        golden = _boot_seconds(box, client, "golden", Image(id=made.image.id), _configure_only(BOOTSTRAP))
        # create 10 + copy of the snapshot 10 + boot 20 (+ 12 for the index refresh)
        assert 40 <= golden <= 55 and 52 <= again <= 67, (golden, again)
        steps = {s["name"]: [w["step"] for w in s["work"]] for s in box.inventory()["servers"]}
        assert steps["golden"] == ["create server", "boot"]
        assert steps["again"] == steps["listed"] == ["create server", "boot", "apt-get update"]
        assert steps["stock"][2:] == [
            "apt-get update",
            "apt-get install docker.io",
            "apt-get install docker-compose-v2",
        ]
    finally:
        box.stop()
