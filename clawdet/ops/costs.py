"""What the fleet costs this month: server hours × the tier's hourly price (programs/tiers.py)
and LLM tokens × the model's price (clawdet/llm/pricing.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from clawdet.llm import pricing as llm_pricing
from db.models import Instance, LlmUsage, utcnow
from programs.tiers import hourly_cost_eur


@dataclass
class CostLine:
    label: str
    quantity: Decimal
    unit: str
    cost: Decimal
    currency: str


@dataclass
class CostReport:
    since: datetime
    servers: list[CostLine] = field(default_factory=list)
    tokens: list[CostLine] = field(default_factory=list)

    @property
    def server_eur(self) -> Decimal:
        return sum((line.cost for line in self.servers), Decimal(0))

    @property
    def llm_usd(self) -> Decimal:
        return sum((line.cost for line in self.tokens), Decimal(0))


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def server_hours(instance: Instance, since: datetime, now: datetime) -> Decimal:
    """Hours the instance's server existed since `since` (from its first ready time, which is
    close to creation, until it was destroyed or now)."""
    if instance.ready_at is None:
        return Decimal(0)
    start = max(instance.ready_at, since)
    end = (
        instance.destroyed_at if instance.destroyed_at and instance.destroyed_at > instance.ready_at else now
    )
    seconds = max(0.0, (end - start).total_seconds())
    return Decimal(seconds) / Decimal(3600)


def month_report(session: Session, now: datetime | None = None) -> CostReport:
    now = now or utcnow()
    report = CostReport(since=month_start(now))
    hours: dict[tuple[str, str], Decimal] = {}
    for instance in session.scalars(
        select(Instance).where(
            Instance.ready_at.is_not(None),
            or_(Instance.destroyed_at.is_(None), Instance.destroyed_at >= report.since),
        )
    ):
        key = (instance.tier, instance.region)
        hours[key] = hours.get(key, Decimal(0)) + server_hours(instance, report.since, now)
    for (tier, region), total in sorted(hours.items()):
        cost = (total * hourly_cost_eur(tier, region)).quantize(Decimal("0.01"))
        report.servers.append(
            CostLine(f"{tier} in {region}", total.quantize(Decimal("0.1")), "h", cost, "EUR")
        )
    for model, prompt, completion in session.execute(
        select(LlmUsage.model, func.sum(LlmUsage.prompt_tokens), func.sum(LlmUsage.completion_tokens))
        .where(LlmUsage.day >= report.since.date())
        .group_by(LlmUsage.model)
        .order_by(LlmUsage.model)
    ):
        prompt, completion = int(prompt or 0), int(completion or 0)
        cost = llm_pricing.cost(model, prompt, completion).quantize(Decimal("0.0001"))
        report.tokens.append(CostLine(model, Decimal(prompt + completion), "tokens", cost, "USD"))
    return report
