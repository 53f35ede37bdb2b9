"""Operators hear of failed and missing nightly backups: one email a day to every admin, naming
the instances (the admin console and `/metrics` show the same: nightly.backup_health)."""

from __future__ import annotations

from sqlalchemy import select

from clawdet.mail import outbox as mail
from db.models import Instance, Role, User, utcnow

KIND = "backups_failed"


def notify(settings, database, failed_ids: list[str], missing: list[str]) -> int:
    """Queues the day's alert to each admin: the instances whose backup failed in this pass and
    those (`missing`, by name) without a nightly backup for too long; returns how many were
    queued (0 once sent today)."""
    if not failed_ids and not missing:
        return 0
    day = utcnow().strftime("%Y-%m-%d")
    with database.sessions() as session:
        names = sorted(session.scalars(select(Instance.subdomain).where(Instance.id.in_(failed_ids))))
        admins = session.scalars(
            select(User).where(
                User.role == Role.ADMIN.value, User.disabled.is_(False), User.email.is_not(None)
            )
        ).all()
        context = {
            "day": day,
            "instances": names,
            "missing": sorted(missing),
            "count": len(names) + len(missing),
            "admin_url": f"{settings.public_url}/admin",
        }
        queued = sum(
            mail.enqueue(
                session,
                KIND,
                admin.email,
                {**context, "name": admin.name or "operator"},
                user_id=admin.id,
                # Failures have their own daily slot: a missing-only email sent first never hides them.
                dedupe_key=f"{KIND}:{day}:{admin.id}:{'failed' if names else 'missing'}",
            )
            for admin in admins
        )
        session.commit()
    return queued
