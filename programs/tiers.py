"""What each tier runs on and what it costs: the one table for the program and the admin cost view.

Pure standard library; `monthly_cost_eur(tier, region)` is what a cost view needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

EU_LOCATIONS = frozenset({"fsn1", "nbg1", "hel1"})
LOCATIONS = ("hel1", "fsn1", "nbg1", "ash", "hil", "sin")  # Hetzner Cloud location names
DEFAULT_LOCATION = "hel1"


@dataclass(frozen=True)
class ServerType:
    name: str
    vcpus: int
    memory_gb: int
    disk_gb: int
    # List prices in EUR excl. VAT for the EU locations; US and Singapore cost more. Hetzner
    # repriced in April and June 2026: refresh from GET /v1/server_types (per-location prices).
    monthly_eur: Decimal
    hourly_eur: Decimal
    locations: frozenset[str]


# cx23 (shared Intel/AMD, "cost-optimized") is only sold in the EU locations, so outside the
# EU the same tier falls back to cpx22 (2 vCPU / 4 GB, sold everywhere). cpx31 from the seed
# was deprecated by Hetzner in October 2025 (the cpx*1 line); cpx32 is its successor with the
# same 4 vCPU / 8 GB. Hourly figures follow Hetzner's monthly cap (monthly ≈ 624 hours).
SERVER_TYPES: dict[str, ServerType] = {
    server_type.name: server_type
    for server_type in (
        ServerType("cx23", 2, 4, 40, Decimal("5.99"), Decimal("0.0096"), EU_LOCATIONS),
        ServerType("cpx22", 2, 4, 80, Decimal("19.99"), Decimal("0.0320"), frozenset(LOCATIONS)),
        # cpx32's post-June-2026 price was not published where we looked: an estimate.
        ServerType("cpx32", 4, 8, 160, Decimal("35.99"), Decimal("0.0577"), frozenset(LOCATIONS)),
    )
}


@dataclass(frozen=True)
class ContainerLimits:
    cpus: str  # docker compose `cpus`, e.g. "1.5"
    memory: str  # docker compose memory, e.g. "1536M"
    pids: int = 512

    @property
    def memory_mb(self) -> int:
        return int(self.memory.rstrip("M"))

    @property
    def heap_mb(self) -> int:
        """Node's old-space limit: about 75 % of the container's memory, the rest for the
        gateway's worker isolates, native memory and the tools it spawns."""
        return self.memory_mb * 3 // 4


@dataclass(frozen=True)
class Tier:
    name: str
    # First entry sold at the instance's location wins (see server_type_for).
    server_types: tuple[str, ...]
    gateway: ContainerLimits
    proxy: ContainerLimits  # Caddy, terminating TLS
    volume_gb: int  # the customer's data volume (Hetzner's minimum is 10 GB)
    browser: ContainerLimits | None = None  # headless Chromium sidecar (enterprise)


# Limits leave about 1 vCPU share and ~700 MB for the OS and dockerd. Free shares the pro
# hardware but is held to less of it, so a free instance cannot become a pro one for free.
# Gateway memory from the real OpenClaw 2026.9.6 measured here (RSS summed over its processes):
# ~0.9-1.2 GB idle after start, ~1.3-1.55 GB after a dozen chats; each limit leaves >= 30 %
# headroom over that (bench/bench_openclaw_memory.py prints the figures).
TIERS: dict[str, Tier] = {
    tier.name: tier
    for tier in (
        Tier(
            "free",
            ("cx23", "cpx22"),
            gateway=ContainerLimits("1.0", "2048M", pids=256),
            proxy=ContainerLimits("0.25", "128M", pids=128),
            volume_gb=10,
        ),
        Tier(
            "pro",
            ("cx23", "cpx22"),
            gateway=ContainerLimits("1.75", "3072M"),
            proxy=ContainerLimits("0.25", "256M", pids=128),
            volume_gb=20,
        ),
        Tier(
            "enterprise",
            ("cpx32",),
            gateway=ContainerLimits("2.5", "5120M", pids=1024),
            proxy=ContainerLimits("0.25", "256M", pids=128),
            volume_gb=50,
            browser=ContainerLimits("1.25", "2048M"),
        ),
    )
}
TIER_NAMES = tuple(TIERS)


def server_type_for(tier: str, location: str) -> ServerType:
    """The server type an instance of `tier` gets at `location`."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; allowed: {', '.join(TIER_NAMES)}")
    if location not in LOCATIONS:
        raise ValueError(f"unknown location {location!r}; allowed: {', '.join(LOCATIONS)}")
    for name in TIERS[tier].server_types:
        if location in SERVER_TYPES[name].locations:
            return SERVER_TYPES[name]
    raise ValueError(f"tier {tier!r} has no server type sold in {location!r}")


def monthly_cost_eur(tier: str, location: str = DEFAULT_LOCATION) -> Decimal:
    return server_type_for(tier, location).monthly_eur


def hourly_cost_eur(tier: str, location: str = DEFAULT_LOCATION) -> Decimal:
    return server_type_for(tier, location).hourly_eur
