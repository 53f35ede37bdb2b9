"""Who did what to what, from where: one row per action, written in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db.models import AuditLog, User


def record(
    session: Session,
    action: str,
    *,
    actor: User | str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    ip: str | None = None,
    **details: Any,
) -> AuditLog:
    if isinstance(actor, User):
        actor_id, actor_label = actor.id, f"user:{actor.id}"
    else:
        actor_id, actor_label = None, actor or "system"
    entry = AuditLog(
        actor_user_id=actor_id,
        actor=actor_label,
        action=action,
        target_type=target_type,
        target_id=target_id,
        ip=ip,
        details=details,
    )
    session.add(entry)
    return entry
