"""A golden snapshot built by the clawdet-golden program on the real engine and plugins, then an
instance booted from it, on the sandbox's realistic clock (scaled 20x): the builder is gone, the
instance skips Docker's install and the image pulls, and it answers through the proxy."""

import httpx
import pytest

from clawdet.reconciler import golden
from tests.fixtures.provisioning import instance, new_instance, servers_named

pytestmark = [pytest.mark.engine, pytest.mark.postgres]


@pytest.mark.sandbox_clock("hetzner", 20)
def test_golden_snapshot_then_an_instance_boots_from_it(reconciler, prov_db, prov_settings, cloud_sandbox):
    target = reconciler.target
    region = "hel1"
    snapshot = golden.build(prov_settings, target, prov_db.installation_id, region)

    inventory = cloud_sandbox.inventory()
    assert inventory["servers"] == [] and inventory["firewalls"] == []  # the builder and its firewall
    found = golden.newest(target, prov_db.installation_id, prov_settings.openclaw_image, region)
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
