"""Emails the database itself says are due, queued by the mail loop: the link that confirms an
address (from the audit log's `user.register`, `user.email_changed` and `user.verify_requested`,
one per entry), a welcome once the address is confirmed, and the monthly token quota warnings at
80 % and 100 %.

Reading the audit log instead of hooking the sign-up code keeps the web app unaware of email;
each email has a dedupe key, so running this any number of times queues it once.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from clawdet.accounts import verification
from clawdet.llm import pricing as llm_pricing
from clawdet.llm import usage as llm_usage
from clawdet.mail import outbox as mail
from clawdet.settings import Settings
from db.engine import Database
from db.models import AuditLog, LlmUsage, OutboxEmail, QuotaWarning, User, utcnow

WELCOME_WINDOW = timedelta(days=7)
QUOTA_PERCENTS = (80, 100)


def queue_due(settings: Settings, database: Database) -> int:
    return (
        queue_verifications(settings, database)
        + queue_welcomes(settings, database)
        + queue_quota_warnings(settings, database)
    )


VERIFY_PER_DAY = 5  # links to one account's addresses a day, whatever asks for them


def queue_verifications(settings: Settings, database: Database) -> int:
    """One link per account with an entry no link has answered since (a sign-up, a changed
    address, a request for a new link), at most VERIFY_PER_DAY a day: the details step cannot
    be used to mail strangers."""
    queued = 0
    since = utcnow() - verification.WINDOW
    with database.session() as session:
        answered = (
            select(OutboxEmail.id)
            .where(
                OutboxEmail.user_id == User.id,
                OutboxEmail.kind == mail.VERIFY_KIND,
                OutboxEmail.created_at >= AuditLog.at,
            )
            .exists()
        )
        rows = session.execute(
            select(User, func.max(AuditLog.id))
            .join(AuditLog, AuditLog.target_id == User.id)
            .where(
                AuditLog.action.in_(("user.register", "user.email_changed", "user.verify_requested")),
                AuditLog.at >= since,
                User.email.is_not(None),
                User.email_verified.is_(False),
                ~answered,
            )
            .group_by(User.id)
            .limit(200)
        ).all()
        for user, entry in rows:
            sent_today = session.scalar(
                select(func.count(OutboxEmail.id)).where(
                    OutboxEmail.user_id == user.id,
                    OutboxEmail.kind == mail.VERIFY_KIND,
                    OutboxEmail.created_at >= since,
                )
            )
            if sent_today >= VERIFY_PER_DAY:
                continue
            queued += mail.enqueue(
                session,
                mail.VERIFY_KIND,
                user.email,
                {
                    "email": user.email,
                    "link": verification.link(settings.secret_key, settings.public_url, user),
                },
                user_id=user.id,
                dedupe_key=f"verify:{user.id}:{entry}",
            )
    return queued


def queue_welcomes(settings: Settings, database: Database) -> int:
    queued = 0
    with database.session() as session:
        welcomed = select(OutboxEmail.id).where(OutboxEmail.dedupe_key == "welcome:" + User.id)
        rows = session.execute(
            select(User, func.min(AuditLog.at))
            .join(AuditLog, AuditLog.target_id == User.id)
            .where(
                AuditLog.action == "user.verify_email",
                AuditLog.at >= utcnow() - WELCOME_WINDOW,
                User.email.is_not(None),
                User.email_verified.is_(True),
                ~welcomed.exists(),
            )
            .group_by(User.id)
            .limit(200)
        ).all()
        for user, _at in rows:
            queued += mail.enqueue(
                session,
                "welcome",
                user.email,
                {
                    "name": user.name or user.x_username or "there",
                    "dashboard_url": f"{settings.public_url}/dashboard",
                    "free_beta": user.payment_method == "free_beta",
                },
                user_id=user.id,
                dedupe_key=f"welcome:{user.id}",
            )
    return queued


def record_quota_levels(database: Database) -> None:
    """Write a QuotaWarning for each user past 80 % or 100 % of this month's quota (the LLM
    proxy records 80 % itself as it goes; 100 % is found here)."""
    day = llm_usage.today()
    month = llm_usage.month_key(day)
    with database.session() as session:
        totals = session.execute(
            select(User, func.sum(LlmUsage.prompt_tokens + LlmUsage.completion_tokens))
            .join(LlmUsage, LlmUsage.user_id == User.id)
            .where(LlmUsage.day >= day.replace(day=1))
            .group_by(User.id)
        ).all()
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        for user, used in totals:
            quota = llm_pricing.monthly_quota(user.payment_method, user.paid)
            for percent in QUOTA_PERCENTS:
                if quota and int(used or 0) * 100 >= quota * percent:
                    session.execute(
                        insert(QuotaWarning)
                        .values(
                            user_id=user.id,
                            month=month,
                            percent=percent,
                            tokens_used=int(used),
                            quota=quota,
                            at=utcnow(),
                        )
                        .on_conflict_do_nothing()
                    )


def queue_quota_warnings(settings: Settings, database: Database) -> int:
    record_quota_levels(database)
    queued = 0
    with database.session() as session:
        rows = session.execute(
            select(QuotaWarning, User)
            .join(User, User.id == QuotaWarning.user_id)
            .where(QuotaWarning.emailed_at.is_(None), User.email_verified.is_(True))  # else: once verified
        ).all()
        for warning, user in rows:
            queued += mail.enqueue(
                session,
                "quota_warning",
                user.email,
                {
                    "name": user.name or user.x_username or "there",
                    "percent": warning.percent,
                    "used": warning.tokens_used,
                    "quota": warning.quota,
                    "month": warning.month,
                    "dashboard_url": f"{settings.public_url}/dashboard",
                },
                user_id=user.id,
                dedupe_key=f"quota:{user.id}:{warning.month}:{warning.percent}",
            )
            warning.emailed_at = utcnow()
    return queued
