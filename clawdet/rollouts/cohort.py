"""Which instances a rollout covers, whether each can be updated now, and a fingerprint of each
that tells whether the fleet changed between a plan and its approval."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from clawdet.instances.lifecycle import DesiredState, Health, InstanceStatus, in_flight
from db.models import Instance
from programs.tiers import TIERS

KINDS = ("unpinned", "all", "tier", "list")


@dataclass(frozen=True)
class Cohort:
    """`unpinned` (the default): every instance not pinned; `all`: pinned ones too (their pin
    moves with them); `tier:<name>`: one tier, not pinned; `list:<a,b>`: the named instances."""

    kind: str
    values: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Cohort:
        kind, _, rest = text.strip().partition(":")
        values = tuple(v.strip().lower() for v in rest.split(",") if v.strip())
        if kind not in KINDS:
            raise ValueError(f"unknown cohort {text!r}: use unpinned, all, tier:<name> or list:<a,b,...>")
        if kind in ("tier", "list") and not values:
            example = "tier:pro" if kind == "tier" else "list:a,b"
            raise ValueError(f"the cohort {kind} needs a value, e.g. {example}")
        if kind == "tier" and (len(values) != 1 or values[0] not in TIERS):
            raise ValueError(f"unknown tier in {text!r}: choose one of {', '.join(TIERS)}")
        return cls(kind, values)

    def __str__(self) -> str:
        return f"{self.kind}:{','.join(self.values)}" if self.values else self.kind

    @property
    def moves_pinned(self) -> bool:
        return self.kind in ("all", "list")

    def members(self, session: Session) -> list[Instance]:
        """Every live instance the cohort names (whether or not it can be updated now)."""
        query = select(Instance).where(
            Instance.desired_state != DesiredState.DESTROYED.value,
            Instance.status != InstanceStatus.DESTROYED.value,
        )
        if self.kind == "tier":
            query = query.where(Instance.tier == self.values[0])
        if self.kind == "list":
            query = query.where(Instance.subdomain.in_(self.values))
        found = list(session.scalars(query.order_by(Instance.created_at, Instance.id)))
        if self.kind == "list":
            missing = sorted(set(self.values) - {i.subdomain for i in found})
            if missing:
                raise ValueError(f"no live instance is called {', '.join(missing)}")
        return found


def not_updatable(instance: Instance, cohort: Cohort) -> str | None:
    """Why `instance` cannot take part now (None: it can)."""
    if DesiredState.DESTROYED.value in (instance.desired_state, instance.status) or instance.status in (
        InstanceStatus.DESTROYING.value,
    ):
        return "removed"
    if instance.desired_state == DesiredState.PAUSED.value:
        return "paused (it starts on its own version when resumed)"
    if instance.image_pinned and not cohort.moves_pinned:
        return "pinned by an operator"
    if instance.status == InstanceStatus.FAILED.value:
        return "failed: repair it first"
    if instance.rollout_id is not None:
        return f"already in rollout {instance.rollout_id}"
    if instance.desired_image is None:
        return "its version is unknown: let a worker converge it first"
    if instance.health == Health.UNHEALTHY.value:
        return "unhealthy: a gate would fail for another reason"
    return None


def busy(instance: Instance) -> bool:
    """Working on something else (a rotation, a repair): wait for it."""
    return in_flight(instance) or instance.status != InstanceStatus.READY.value


def fingerprint(instance: Instance) -> str:
    """What a plan depends on: a new generation, drift marked by the fleet scan, another image,
    a pin, a replaced server or volume, a changed health each change it."""
    parts = (
        instance.generation,
        instance.observed_generation,
        instance.status,
        instance.desired_state,
        instance.requested_action,
        instance.health,
        instance.server_id,
        instance.volume_id,
        instance.desired_image,
        instance.image_pinned,
        instance.tier,
        instance.rollout_id,
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
