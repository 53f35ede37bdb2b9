"""A golden snapshot built by the clawdet-golden program on the real engine and plugins, then an
instance booted from it, on the sandbox's realistic clock (scaled 20x): the builder is gone, the
instance skips Docker's install and the image pulls, and it answers through the proxy. A build
that fails leaves no builder and the next one succeeds; other images or a snapshot deleted out of
band make a new snapshot."""

import dataclasses

import httpx
import pytest
from hcloud import Client
from hcloud.images import Image

from clawdet.errors import UserFacingError
from clawdet.reconciler import golden
from tests.fixtures.provisioning import instance, new_instance, pinned, servers_named

pytestmark = [pytest.mark.engine, pytest.mark.postgres]


@pytest.mark.sandbox_clock("hetzner", 20)
def test_golden_snapshot_then_an_instance_boots_from_it(reconciler, prov_db, prov_settings, cloud_sandbox):
    images = {"caddy_image": prov_settings.caddy_image, "browser_image": prov_settings.browser_image}
    target = reconciler.target
    region = "hel1"
    snapshot = golden.build(prov_settings, target, prov_db.installation_id, region)

    inventory = cloud_sandbox.inventory()
    assert inventory["servers"] == [] and inventory["firewalls"] == []  # the builder and its firewall
    found = golden.newest(target, prov_db.installation_id, prov_settings.openclaw_image, region, **images)
    assert found == snapshot.image_id
    again = golden.build(prov_settings, target, prov_db.installation_id, region)  # idempotent
    assert again == snapshot and cloud_sandbox.inventory()["servers"] == []

    instance_id = new_instance(prov_db, prov_settings, "goldie")
    assert instance(prov_db, instance_id).region == region
    assert reconciler.drain() == 1
    ready = instance(prov_db, instance_id)
    assert ready.status == "ready", ready.status_message  # ready: a first chat went through the proxy
    [server] = servers_named(cloud_sandbox, "goldie")
    assert server["image_id"] == snapshot.image_id
    steps = [work["step"] for work in server["work"]]
    assert not [s for s in steps if s.startswith(("apt-get", "docker pull"))], steps
    assert steps[:2] == ["create server", "boot"] and "gateway cold start" in steps
    assert httpx.get(f"http://{ready.ipv4}:18789/healthz", timeout=3).status_code == 200


def snapshot_ids(box) -> list[int]:
    client = Client(token=box.hcloud_token, api_endpoint=box.hcloud_url, poll_interval=0.05)
    return sorted(image.id for image in client.images.get_all(type="snapshot"))


def test_a_failed_build_leaves_no_builder_and_stale_snapshots_are_built_again(
    prov_db, prov_settings, reconciler, cloud_sandbox
):
    target, installation_id, region = reconciler.target, prov_db.installation_id, "fsn1"
    cloud_sandbox.faults.add(
        service="ssh", method="EXEC", path="cloud-init status --wait", status=1, fail_next=1
    )
    with pytest.raises(UserFacingError) as failed:
        golden.build(prov_settings, target, installation_id, region)
    assert failed.value.code == "golden_build_failed" and "again" in failed.value.action
    inventory = cloud_sandbox.inventory()
    assert inventory["servers"] == [] and inventory["firewalls"] == [] and snapshot_ids(cloud_sandbox) == []

    first = golden.build(prov_settings, target, installation_id, region)  # a new builder, this time fine
    assert snapshot_ids(cloud_sandbox) == [first.image_id] and cloud_sandbox.inventory()["servers"] == []

    moved = dataclasses.replace(prov_settings, caddy_image=pinned("caddy:2.11.5-alpine"))
    second = golden.build(moved, target, installation_id, region)  # another Caddy: another snapshot
    assert second.image_id != first.image_id and snapshot_ids(cloud_sandbox) == [second.image_id]
    openclaw_image = moved.openclaw_image
    assert golden.newest(target, installation_id, openclaw_image, region) is None  # other images
    caddy, browser = moved.caddy_image, moved.browser_image
    found = golden.newest(
        target, installation_id, openclaw_image, region, caddy_image=caddy, browser_image=browser
    )
    assert found == second.image_id

    Client(token=cloud_sandbox.hcloud_token, api_endpoint=cloud_sandbox.hcloud_url).images.delete(
        Image(id=second.image_id)
    )
    third = golden.build(moved, target, installation_id, region)  # deleted out of band: built again
    assert third.image_id not in (first.image_id, second.image_id)
    assert snapshot_ids(cloud_sandbox) == [third.image_id] and cloud_sandbox.inventory()["servers"] == []
