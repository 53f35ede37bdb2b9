"""The free beta's cap: how many accounts hold the free beta plan, against FREE_BETA_CAP.
Beyond the cap new accounts are created without a plan: a waitlist the admin console shows."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clawdet.settings import Settings
from db.models import PaymentMethod, User


def free_beta_users(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.payment_method == PaymentMethod.FREE_BETA.value, User.paid.is_(True))
        )
        or 0
    )


def free_beta_full(session: Session, settings: Settings) -> bool:
    return free_beta_users(session) >= settings.free_beta_cap


def grants_free_beta(session: Session, settings: Settings) -> bool:
    """Whether a new account gets the free beta plan now."""
    return settings.free_beta and not free_beta_full(session, settings)
