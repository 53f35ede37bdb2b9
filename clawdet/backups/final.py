"""Destroy keeps a final backup of the instance's state for BACKUP_FINAL_RETENTION_DAYS (then
retention deletes it, with every other backup of the destroyed instance)."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from clawdet.backups import service
from clawdet.errors import UserFacingError
from db.models import Backup, Instance, utcnow

log = logging.getLogger(__name__)

RECENT = timedelta(hours=24)  # a destroy that runs again (after an interruption) keeps the first one


def before_destroy(settings, database, instance_id: str, *, note=lambda message: None) -> Backup | None:
    """The final backup, made while the server still runs. Best effort: a destroy the customer
    asked for goes on without it; the failed row shows in the backup alerts. `note`: a progress
    line for the customer."""
    with database.sessions() as session:
        instance = session.get(Instance, instance_id)
        if instance is None:
            return None
        if not instance.ipv4 or not instance.server_id:
            return _keep_newest(session, settings, instance_id)  # paused: no server to back up
        recent = session.scalars(
            select(Backup).where(
                Backup.instance_id == instance_id,
                Backup.kind == service.Kind.FINAL.value,
                Backup.status == service.Status.SUCCEEDED.value,
                Backup.started_at > utcnow() - RECENT,
            )
        ).first()
    if recent is not None:
        return recent
    try:
        store = service.store_for(settings)
    except UserFacingError as exc:  # not configured, or not here
        log.warning("no final backup of %s: %s", instance_id, exc.message)
        return None
    note("Keeping a final backup of your assistant")
    try:
        final = service.create(settings, database, instance_id, service.Kind.FINAL, store=store)
    except UserFacingError as exc:
        log.warning("final backup of %s not made: %s", instance_id, exc.message)
        final = None
    if final is not None and final.status == service.Status.SUCCEEDED.value:
        return final
    with database.sessions() as session:  # a broken server: its newest good backup stands in
        return _keep_newest(session, settings, instance_id)


def _keep_newest(session, settings, instance_id: str) -> Backup | None:
    """A paused instance's newest backup is kept as long as a final one would be."""
    newest = session.scalars(
        select(Backup)
        .where(Backup.instance_id == instance_id, Backup.status == service.Status.SUCCEEDED.value)
        .order_by(Backup.started_at.desc())
    ).first()
    if newest is not None:
        newest.expires_at = utcnow() + timedelta(days=settings.backup_final_retention_days)
        session.commit()
    return newest
