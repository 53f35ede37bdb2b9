"""Token accounting for the LLM proxy: daily usage rows, the monthly quota and its warnings.

Upserts use INSERT ... ON CONFLICT on both SQLite and PostgreSQL, so concurrent requests of one
instance add up instead of overwriting each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from clawdet.llm import pricing as llm_pricing
from db.models import LlmUsage, QuotaWarning, User


def today() -> date:
    return datetime.now(UTC).date()


def month_key(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _insert(session: Session, table):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def record(
    session: Session,
    *,
    user_id: str,
    instance_id: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    day: date | None = None,
    requests: int = 1,
) -> None:
    day = day or today()
    statement = _insert(session, LlmUsage).values(
        user_id=user_id,
        instance_id=instance_id,
        model=model[:100],
        day=day,
        requests=requests,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    excluded = statement.excluded
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id", "instance_id", "model", "day"],
            set_={
                "requests": LlmUsage.requests + excluded.requests,
                "prompt_tokens": LlmUsage.prompt_tokens + excluded.prompt_tokens,
                "completion_tokens": LlmUsage.completion_tokens + excluded.completion_tokens,
            },
        )
    )


def month_of(day: date) -> tuple[date, date]:
    """The first day of `day`'s month and of the next."""
    first = day.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1)


def month_tokens(session: Session, user_id: str, day: date | None = None) -> int:
    return month_totals(session, [user_id], day).get(user_id, 0)


def month_totals(session: Session, user_ids: list[str], day: date | None = None) -> dict[str, int]:
    """month_tokens of several users, in one query."""
    first, after = month_of(day or today())
    rows = session.execute(
        select(LlmUsage.user_id, func.sum(LlmUsage.prompt_tokens + LlmUsage.completion_tokens))
        .where(LlmUsage.user_id.in_(user_ids), LlmUsage.day >= first, LlmUsage.day < after)
        .group_by(LlmUsage.user_id)
    )
    return {user_id: int(total or 0) for user_id, total in rows}


def warn_if_near_quota(
    session: Session, user_id: str, payment_method: str | None, paid: bool, used: int, day: date | None = None
) -> bool:
    """Records (once per user and month) that `used` passed WARNING_PERCENT of the quota."""
    quota = llm_pricing.monthly_quota(payment_method, paid)
    if not quota or used * 100 < quota * llm_pricing.WARNING_PERCENT:
        return False
    statement = _insert(session, QuotaWarning).values(
        user_id=user_id,
        month=month_key(day or today()),
        percent=llm_pricing.WARNING_PERCENT,
        tokens_used=used,
        quota=quota,
        at=datetime.now(UTC),
    )
    session.execute(statement.on_conflict_do_nothing())
    return True


@dataclass
class ModelUsage:
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal


@dataclass
class MonthSummary:
    month: str
    quota: int | None
    tokens: int = 0
    cost: Decimal = Decimal(0)
    models: list[ModelUsage] = field(default_factory=list)
    warning: QuotaWarning | None = None

    @property
    def percent(self) -> int:
        return min(100, round(self.tokens * 100 / self.quota)) if self.quota else 0


def month_summary(session: Session, user: User, day: date | None = None) -> MonthSummary:
    day = day or today()
    rows = session.execute(
        select(
            LlmUsage.model,
            func.sum(LlmUsage.requests),
            func.sum(LlmUsage.prompt_tokens),
            func.sum(LlmUsage.completion_tokens),
        )
        .where(LlmUsage.user_id == user.id, LlmUsage.day >= day.replace(day=1))
        .group_by(LlmUsage.model)
        .order_by(LlmUsage.model)
    ).all()
    summary = MonthSummary(
        month=month_key(day), quota=llm_pricing.monthly_quota(user.payment_method, user.paid)
    )
    for model, requests, prompt, completion in rows:
        line = ModelUsage(
            model,
            int(requests),
            int(prompt),
            int(completion),
            llm_pricing.cost(model, int(prompt), int(completion)),
        )
        summary.models.append(line)
        summary.tokens += line.prompt_tokens + line.completion_tokens
        summary.cost += line.cost
    summary.warning = session.scalar(
        select(QuotaWarning).where(QuotaWarning.user_id == user.id, QuotaWarning.month == summary.month)
    )
    return summary
