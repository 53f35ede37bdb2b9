"""The free beta's cap: how many accounts hold the free beta plan, against FREE_BETA_CAP.
Registration asks `free_beta_full` before granting the plan (refuse or waitlist beyond it)."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import PaymentMethod, User
from db.settings import Settings


def free_beta_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User).where(
        User.payment_method == PaymentMethod.FREE_BETA.value, User.paid.is_(True))) or 0


def free_beta_full(session: Session, settings: Settings) -> bool:
    return free_beta_users(session) >= settings.free_beta_cap
