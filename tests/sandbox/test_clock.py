"""The sandbox's clock: what a fake server spends time on, decided from what its cloud-config and
its image really ask for (pure decisions, no sandbox running)."""

from __future__ import annotations

import pytest

from programs import cloud_init as program_cloud_init
from sandbox.clock import Clock, SystemContents, Work, make_clock, repository, total
from sandbox.cloud_init import parse_cloud_config

HETZNER = make_clock("hetzner")
DOCKER = ("docker.io", "docker-compose-v2")
OPENCLAW = "ghcr.io/openclaw/openclaw:2026.9.6@sha256:" + "a" * 64


def test_instant_profile_keeps_the_old_delays_and_nothing_else():
    clock = make_clock("instant", boot=0.1, action=0.05)
    assert (clock.boot, clock.action, clock.create_seconds(from_snapshot=True)) == (0.1, 0.05, 0.05)
    work = clock.first_boot_work(package_update=True, packages=DOCKER, pulls=[OPENCLAW], has=SystemContents())
    assert total(work) == 0 and clock.gateway_cold_start == 0 and clock.dns_propagation == 0


def test_a_stock_image_installs_docker_and_a_snapshot_that_has_it_does_not():
    bare = HETZNER.first_boot_work(package_update=True, packages=DOCKER, pulls=(), has=SystemContents())
    assert [w.step for w in bare] == [
        "apt-get update",
        "apt-get install docker.io",
        "apt-get install docker-compose-v2",
    ]
    golden = SystemContents(packages=frozenset(DOCKER))
    refresh_only = [Work("apt-get update", HETZNER.package_index)]
    # listing packages makes cloud-init refresh the index, even when every package is there
    assert (
        HETZNER.first_boot_work(package_update=False, packages=DOCKER, pulls=(), has=golden) == refresh_only
    )
    assert HETZNER.first_boot_work(package_update=True, packages=DOCKER, pulls=(), has=golden) == refresh_only
    # a golden instance's user_data lists neither (programs/cloud_init.py SOFTWARE_KEYS)
    assert HETZNER.first_boot_work(package_update=False, packages=(), pulls=(), has=golden) == []
    half = SystemContents(packages=frozenset(DOCKER[:1]))
    assert [
        w.step for w in HETZNER.first_boot_work(package_update=False, packages=DOCKER, pulls=(), has=half)
    ] == [
        "apt-get update",
        "apt-get install docker-compose-v2",
    ]


def test_pulls_are_skipped_only_for_images_already_on_the_disk():
    caddy = "caddy:2.11.4-alpine"
    has = SystemContents(images=frozenset([OPENCLAW]))
    assert HETZNER.pull_work([OPENCLAW, caddy, caddy], has) == [Work(f"docker pull {caddy}", 4.0)]
    other_tag = OPENCLAW.replace("2026.9.6", "2026.10.1")
    assert HETZNER.pull_work([other_tag], has) == [Work(f"docker pull {other_tag}", 35.0)]


def test_repository_of_image_references():
    assert repository(OPENCLAW) == "ghcr.io/openclaw/openclaw"
    assert repository("caddy:2.11.4-alpine") == "caddy"
    assert repository("localhost:5000/app") == "localhost:5000/app"


def test_scale_turns_profile_seconds_into_wall_seconds_and_back():
    clock = make_clock("hetzner", 20)
    assert clock.wall(60) == 3.0 and clock.profile_seconds(3.0) == 60
    assert clock.create_seconds(from_snapshot=True) == clock.create_seconds(from_snapshot=False) + 10
    with pytest.raises(ValueError):
        Clock(scale=0)
    with pytest.raises(ValueError, match="unknown clock profile"):
        make_clock("aws")


def test_cloud_config_tells_packages_and_pulls():
    user_data = (
        "#cloud-config\npackage_update: true\npackages: [docker.io, [docker-compose-v2, 2.27]]\n"
        "runcmd:\n  - [sh, -ec, 'docker pull caddy:2 && docker image pull --quiet ghcr.io/x/y:1']\n"
    )
    cloud = parse_cloud_config(user_data)
    assert cloud.package_update and cloud.packages == DOCKER
    assert cloud.runcmd_pulls == ("caddy:2", "ghcr.io/x/y:1")


def test_the_platforms_bootstrap_asks_for_docker_from_the_archive():
    user_data = program_cloud_init.render_user_data(
        ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6f2t0 platform",
        data_device="/dev/disk/by-id/scsi-0HC_Volume_1",
    )
    cloud = parse_cloud_config(user_data)
    assert cloud.package_update and set(DOCKER) <= set(cloud.packages)
