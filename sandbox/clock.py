"""How long each step of the fake cloud takes: one ``Clock`` for every delay the sandbox has.

A profile names durations in *profile seconds*; ``scale`` runs it faster (``scale=20``: a 60 s
package install takes 3 s of wall time), so figures measured in wall time are multiplied back by
``scale`` (``profile_seconds``). ``instant`` is the test bed the sandbox always had (only
``boot_delay`` and ``action_delay``, nothing for cloud-init, pulls or cold starts); ``hetzner``
takes about as long as Hetzner Cloud, Ubuntu's archive, the registries and Cloudflare (sources
in sandbox/README.md, "A realistic clock").

The work a server does is decided from what it really asks for: ``first_boot_work`` from its
cloud-config (``package_update``, ``packages``, runcmd's ``docker pull``) against what its image
already holds (``SystemContents``), and ``pull_work`` from the images a ``docker compose up``
needs against those already on the disk. A snapshot carries its server's contents, so a server
booted from it skips exactly the work that was done before the snapshot.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

PROFILES = ("instant", "hetzner")


@dataclasses.dataclass(frozen=True)
class SystemContents:
    """What a disk holds that cloud-init and docker would otherwise fetch."""

    packages: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()  # image references, as compose names them

    @classmethod
    def of(cls, record: Mapping[str, Any] | None) -> SystemContents:
        record = record or {}
        return cls(frozenset(record.get("packages", ())), frozenset(record.get("images", ())))

    def record(self) -> dict[str, list[str]]:
        return {"packages": sorted(self.packages), "images": sorted(self.images)}

    def plus(self, packages: Iterable[str] = (), images: Iterable[str] = ()) -> SystemContents:
        return SystemContents(self.packages | set(packages), self.images | set(images))


@dataclasses.dataclass(frozen=True)
class Work:
    """One step a server spends time on, in profile seconds."""

    step: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class Clock:
    profile: str = "instant"
    scale: float = 1.0  # how many times faster than the profile the sandbox runs
    action: float = 0.2  # a Hetzner action (power, rebuild, attach...) stays `running`
    server_create: float | None = None  # the create_server action (None: as `action`)
    server_create_from_snapshot: float = 0.0  # extra: the snapshot is copied to the new disk
    boot: float = 1.0  # power-on to SSH listening (kernel, cloud-init's early stages)
    package_index: float = 0.0  # apt-get update (`package_update`, `package_upgrade` or any `packages`)
    package_install: Mapping[str, float] = dataclasses.field(default_factory=dict)
    package_default: float = 0.0  # a package not named above
    image_pull: Mapping[str, float] = dataclasses.field(default_factory=dict)  # by repository name
    image_pull_default: float = 0.0
    gateway_cold_start: float = 0.0  # container started to /healthz answering
    dns_propagation: float = 0.0  # a record created to resolvable at the edge
    snapshot_create: float | None = None  # the create_image action (None: as `action`)

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError("the clock's scale must be positive")

    # -- durations ---------------------------------------------------------------------------
    def wall(self, seconds: float) -> float:
        """Profile seconds as wall-clock seconds."""
        return seconds / self.scale

    def profile_seconds(self, wall_seconds: float) -> float:
        return wall_seconds * self.scale

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(self.wall(seconds))

    def poll_interval(self) -> str:
        """How often the hcloud provider should ask about an action here: the real provider's
        500ms on the realistic profile, scaled like every other duration (as many requests per
        action as on Hetzner); 50ms on the instant profile, whose actions take 0.2 s or none."""
        if self.profile == "instant":
            return "50ms"
        return f"{max(10, round(500 / self.scale))}ms"

    def create_seconds(self, from_snapshot: bool) -> float:
        base = self.action if self.server_create is None else self.server_create
        return base + (self.server_create_from_snapshot if from_snapshot else 0.0)

    def snapshot_seconds(self) -> float:
        return self.action if self.snapshot_create is None else self.snapshot_create

    def pull_seconds(self, image: str) -> float:
        return self.image_pull.get(repository(image), self.image_pull_default)

    # -- what a server really does -----------------------------------------------------------
    def first_boot_work(
        self,
        *,
        package_update: bool,
        packages: Iterable[str],
        pulls: Iterable[str],
        has: SystemContents,
    ) -> list[Work]:
        """cloud-init's package stage and runcmd's pulls. Any `packages` make cloud-init refresh
        the index first (as `package_update` does), even when all are installed; apt-get then
        installs only the missing ones (an installed package costs next to nothing)."""
        packages = list(dict.fromkeys(packages))
        missing = [p for p in packages if p not in has.packages]
        work = []
        if package_update or packages:
            work.append(Work("apt-get update", self.package_index))
        for package in missing:
            seconds = self.package_install.get(package, self.package_default)
            work.append(Work(f"apt-get install {package}", seconds))
        return work + self.pull_work(pulls, has)

    def pull_work(self, images: Iterable[str], has: SystemContents) -> list[Work]:
        return [
            Work(f"docker pull {image}", self.pull_seconds(image))
            for image in dict.fromkeys(images)
            if image not in has.images
        ]


def repository(image: str) -> str:
    """`caddy` of `caddy:2.11.4-alpine@sha256:...`, `ghcr.io/openclaw/openclaw` of its reference."""
    name = image.partition("@")[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def total(work: Iterable[Work]) -> float:
    return sum(item.seconds for item in work)


# Profile seconds on Hetzner Cloud (cx22/cpx11 class, Ubuntu 24.04, fsn1): see sandbox/README.md.
HETZNER = {
    "action": 2.0,
    "server_create": 10.0,
    "server_create_from_snapshot": 10.0,
    "boot": 20.0,
    "package_index": 12.0,
    "package_install": {"docker.io": 45.0, "docker-compose-v2": 6.0},
    "package_default": 8.0,
    "image_pull": {
        "ghcr.io/openclaw/openclaw": 35.0,
        "caddy": 4.0,
        "chromedp/headless-shell": 20.0,
    },
    "image_pull_default": 15.0,
    "gateway_cold_start": 10.0,
    "dns_propagation": 5.0,
    "snapshot_create": 60.0,
}


def make_clock(profile: str = "instant", scale: float = 1.0, **instant: float) -> Clock:
    """The named profile at ``scale``; ``instant`` takes ``boot`` and ``action`` (the sandbox's
    ``boot_delay`` and ``action_delay``) as given."""
    if profile == "instant":
        return Clock(profile="instant", scale=scale, **instant)
    if profile == "hetzner":
        return Clock(profile="hetzner", scale=scale, **HETZNER)
    raise ValueError(f"unknown clock profile {profile!r}: one of {', '.join(PROFILES)}")
