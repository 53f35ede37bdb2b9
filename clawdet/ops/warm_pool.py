"""The warm pool as configured and as it stands, for the web app and the workers alike:
WARM_POOL read, and the waiting members with what they cost (the pool itself is kept by
clawdet/reconciler/pool.py)."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal

from sqlalchemy import select

from clawdet.errors import UserFacingError
from db.models import PoolServer
from programs import tiers

WAITING = ("creating", "ready")  # what a member costs for while no instance has it
_TARGET = re.compile(r"([a-z0-9-]+):([a-z0-9-]+)=([0-9]+)")


def targets(text: str) -> dict[tuple[str, str], int]:
    """WARM_POOL (`pro:hel1=2,free:fsn1=1`) as {(tier, region): count}."""
    wanted: dict[tuple[str, str], int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = _TARGET.fullmatch(item)
        if not match:
            raise ValueError(f"WARM_POOL: {item!r} is not tier:region=count (e.g. pro:hel1=2)")
        tier, region, count = match[1], match[2], int(match[3])
        if tier not in tiers.TIERS:
            raise ValueError(f"WARM_POOL: {tier!r} is not a tier ({', '.join(tiers.TIER_NAMES)})")
        tiers.server_type_for(tier, region)  # a region the tier is not offered in fails here
        wanted[(tier, region)] = count
    return wanted


def wanted(settings) -> dict[tuple[str, str], int]:
    """WARM_POOL read, or a clear refusal (the worker and `clawdet pool keep` start with it)."""
    try:
        return targets(settings.warm_pool)
    except ValueError as exc:
        raise UserFacingError(
            "bad_warm_pool", str(exc), "Fix WARM_POOL (e.g. pro:hel1=2, or unset) and start again."
        ) from None


@dataclasses.dataclass(frozen=True)
class Waiting:
    """One member as the admin console lists it."""

    member: PoolServer
    monthly_eur: Decimal


def listing(session, warm_pool: str) -> tuple[list[Waiting], dict[tuple[str, str], int], Decimal]:
    """The members not yet adopted (with the last failures), the targets (WARM_POOL; {} when
    unreadable: the worker says why) and what the waiting ones cost a month."""
    rows = session.scalars(
        select(PoolServer).where(PoolServer.status != "adopted").order_by(PoolServer.created_at)
    ).all()
    waiting = [Waiting(m, tiers.monthly_cost_eur(m.tier, m.region)) for m in rows]
    try:
        asked = targets(warm_pool)
    except ValueError:
        asked = {}
    cost = sum((w.monthly_eur for w in waiting if w.member.status in WAITING), Decimal(0))
    return waiting, asked, cost
