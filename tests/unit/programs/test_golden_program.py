"""The clawdet-golden program against Pulumi's mocks: the build step declares the builder (its
firewall, the server with the golden cloud-config, the wait for cloud-init and the clean-up before
the snapshot) and a snapshot of it; the seal step declares only the snapshot, with the same
inputs, so the builder is deleted."""

from __future__ import annotations

import importlib

import pulumi
import pytest
import yaml
from pulumi.runtime import settings as runtime_settings

from programs import cloud_init, ssh_keys
from programs.golden.labels import images_hash, snapshot_selector, stack_name
from tests.unit.programs.test_resources import (
    COMMAND,
    FIREWALL,
    SERVER,
    SERVER_ID,
    RecordingMocks,
    RecordingMonitor,
)

pytestmark = pytest.mark.usefixtures("current_event_loop")
SNAPSHOT = "hcloud:index/snapshot:Snapshot"
IMAGES = ["ghcr.io/openclaw/openclaw:2026.9.6@sha256:" + "a" * 64, "caddy:2.11.4-alpine@sha256:" + "b" * 64]
KEY = ssh_keys.generate()


def run_program(**extra: str) -> RecordingMocks:
    runtime_settings.reset_options(project="clawdet-golden", stack="openclaw-2026.9.6-hel1", preview=False)
    recording = RecordingMocks()
    pulumi.runtime.set_mocks(
        recording, project="clawdet-golden", stack="openclaw-2026.9.6-hel1", preview=False,
        monitor=RecordingMonitor(recording),
    )  # fmt: skip
    config = {
        "openclawVersion": "2026.9.6",
        "region": "hel1",
        "images": ",".join(IMAGES),
        "installationId": "cd-test",
        "controlPlaneSshCidrs": "192.0.2.0/28",
        "sshPort": "2222",
        "sshPrivateKey": KEY,
        **extra,
    }
    pulumi.runtime.set_all_config({f"clawdet-golden:{k}": v for k, v in config.items()}, [])
    program = importlib.import_module("programs.golden.__main__")

    @pulumi.runtime.test
    def run():
        program.main()

    try:
        run()
    finally:
        pulumi.runtime.set_all_config({}, [])
        runtime_settings.reset_options()
    return recording


def by_type(recording: RecordingMocks) -> dict[str, list]:
    found: dict[str, list] = {}
    for resource in recording.resources:
        found.setdefault(resource.typ, []).append(resource)
    return found


def test_the_build_step_snapshots_a_bootstrapped_and_cleaned_builder():
    recording = run_program()
    resources = by_type(recording)
    [server], [firewall], [wait], [snapshot] = (resources[t] for t in (SERVER, FIREWALL, COMMAND, SNAPSHOT))
    user_data = yaml.safe_load(server.inputs["userData"])
    assert user_data["package_update"] is True and {"docker.io", "docker-compose-v2"} <= set(
        user_data["packages"]
    )
    assert ["docker", "pull", "--quiet", IMAGES[0]] in user_data["runcmd"] and "mounts" not in user_data
    assert user_data["ssh_authorized_keys"] == [ssh_keys.public_key(KEY)]
    # the installation's, so `clawdet scan` lists a builder left behind (no instance's: no sweep of one)
    builder_labels = {
        "managed-by": "clawdet",
        "clawdet-installation": "cd-test",
        "clawdet-golden-builder": "openclaw-2026.9.6-hel1",
    }
    assert server.inputs["labels"] == firewall.inputs["labels"] == builder_labels
    assert server.inputs["location"] == "hel1" and server.inputs["image"] == "ubuntu-24.04"
    ssh_rules = [r for r in firewall.inputs["rules"] if r["port"] == "2222"]
    assert ssh_rules and ssh_rules[0]["sourceIps"] == ["192.0.2.0/28"]
    assert wait.inputs["create"].split(" && ") == [
        "cloud-init status --wait",
        "cloud-init clean --logs --machine-id",
        "rm -f /root/.ssh/authorized_keys",
        "sync",
    ]
    assert recording.requests["builder-bootstrapped"].customTimeouts.create == "15m"
    assert "builder-bootstrapped" in recording.depends_on("snapshot")
    labels = ",".join(f"{k}={v}" for k, v in sorted(snapshot.inputs["labels"].items()))
    selector = snapshot_selector("cd-test", "2026.9.6", "hel1", images_hash(IMAGES))
    assert labels == ",".join(sorted(selector.split(",")))
    assert snapshot.inputs["labels"]["clawdet-images"] == images_hash(IMAGES)


def test_other_image_digests_make_another_snapshot():
    moved = [IMAGES[0], "caddy:2.11.4-alpine@sha256:" + "c" * 64]
    [snapshot] = by_type(run_program(images=",".join(moved)))[SNAPSHOT]
    assert snapshot.inputs["labels"]["clawdet-images"] == images_hash(moved) != images_hash(IMAGES)


def test_the_seal_step_keeps_only_the_snapshot_with_the_same_inputs():
    built = by_type(run_program())[SNAPSHOT][0]
    assert built.inputs["serverId"] == int(SERVER_ID)  # the builder's id
    sealed = by_type(run_program(builderServerId=str(int(built.inputs["serverId"]))))
    assert set(sealed) == {SNAPSHOT}
    [snapshot] = sealed[SNAPSHOT]
    assert snapshot.inputs == built.inputs
    other = by_type(run_program(builderServerId="2002"))[SNAPSHOT][0]
    assert other.inputs != built.inputs  # so the comparison above can tell


def test_a_golden_instance_only_configures_and_stacks_are_per_version_and_region():
    device = "/dev/disk/by-id/scsi-0HC_Volume_1"
    full = yaml.safe_load(
        cloud_init.render_user_data(data_device=device, ssh_public_key=ssh_keys.public_key(KEY))
    )
    slim = yaml.safe_load(
        cloud_init.render_user_data(
            data_device=device, ssh_public_key=ssh_keys.public_key(KEY), software_preinstalled=True
        )
    )
    assert {k: v for k, v in full.items() if k not in ("package_update", "packages")} == slim
    assert stack_name("2026.9.6", "hel1") == "openclaw-2026.9.6-hel1"
    with pytest.raises(ValueError):
        cloud_init.render_golden_user_data(ssh_public_key=ssh_keys.public_key(KEY), images=["not an image"])
