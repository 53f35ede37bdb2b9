"""The nightly pass: every ready instance whose moment in BACKUP_WINDOW has come and that has not
been backed up since gets its nightly backup, then retention runs for it. Workers run it once a
period for the whole fleet (clawdet/reconciler/worker.py); `clawdet backups nightly` runs it now.
Passes may overlap (a long pass, the command beside a worker): each instance's night is claimed
once (claim_night). An instance an operation holds is left to a later pass. A failed or missing
nightly backup shows in `backup_health` (metrics, admin, alerts)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from clawdet.backups import alerts, export, schedule, service
from clawdet.errors import UserFacingError
from clawdet.instances import leases
from clawdet.instances.lifecycle import DesiredState, InstanceStatus
from db.models import Backup, Instance, PeriodicRun, utcnow

log = logging.getLogger(__name__)


@dataclass
class NightlyReport:
    made: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # an operation held them: a later pass tries again

    def line(self) -> str:
        return (
            f"nightly backups: {len(self.made)} made, {len(self.failed)} failed, "
            f"{len(self.busy)} busy (tried again later)"
        )


def due(database, window: schedule.Window, now: datetime) -> list[str]:
    """Ready, running instances whose nightly moment has passed since their last nightly attempt."""
    with database.sessions() as session:
        last = (
            select(Backup.instance_id, func.max(Backup.started_at).label("at"))
            .where(Backup.kind == service.Kind.NIGHTLY.value)
            .group_by(Backup.instance_id)
            .subquery()
        )
        rows = session.execute(
            select(Instance.id, last.c.at)
            .outerjoin(last, last.c.instance_id == Instance.id)
            .where(
                Instance.status == InstanceStatus.READY.value,
                Instance.desired_state == DesiredState.RUNNING.value,
                Instance.ipv4.is_not(None),
            )
            .order_by(Instance.id)
        ).all()
    return [instance_id for instance_id, at in rows if schedule.is_due(instance_id, window, now, at)]


def run(settings, database, *, now: datetime | None = None, store=None, stop=None) -> NightlyReport:
    """`stop`: a threading.Event that ends the pass between two instances (a worker shutting down)."""
    now = now or utcnow()
    window = schedule.Window.parse(settings.backup_window)
    store = store or service.store_for(settings)
    report = NightlyReport()
    owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    for instance_id in due(database, window, now):
        if stop is not None and stop.is_set():
            break
        if leased(database, instance_id):
            report.busy.append(instance_id)  # still due: the next pass takes it
            continue
        if not claim_night(database, instance_id, schedule.latest_slot(instance_id, window, now), owner):
            continue  # another pass backs it up tonight
        try:
            row = service.create(settings, database, instance_id, service.Kind.NIGHTLY, store=store)
        except UserFacingError as exc:
            log.warning("nightly backup of %s not made: %s", instance_id, exc.message)
            report.failed.append(instance_id)
            continue
        except Exception:  # one instance's surprise never costs the rest of the fleet its backup
            log.exception("nightly backup of %s failed", instance_id)
            report.failed.append(instance_id)
            continue
        (report.made if row.status == service.Status.SUCCEEDED.value else report.failed).append(instance_id)
        _prune(settings, database, instance_id, store, now)
    for instance_id in destroyed_with_backups(database):
        _prune(settings, database, instance_id, store, now)
    with database.sessions() as session:
        missing = backup_health(session, now=now).missing
    alerts.notify(settings, database, report.failed, missing)
    try:
        export.delete_expired(store, now)
    except UserFacingError as exc:
        log.warning("expired exports not deleted: %s", exc.message)
    return report


def leased(database, instance_id: str) -> bool:
    """Whether an operation holds the instance's work lease now (it may be changing its server)."""
    with database.sessions() as session:
        now = leases.database_now(session)
        held = select(Instance.id).where(
            Instance.id == instance_id, Instance.lease_owner.is_not(None), Instance.lease_expires_at > now
        )
        return session.scalar(held) is not None


def claim_night(database, instance_id: str, slot: datetime, owner: str) -> bool:
    """Whether this pass makes the instance's nightly backup of the night whose moment is `slot`.
    One conditional upsert on periodic_runs (as leases.claim_period): of two passes running at
    once, exactly one wins each instance's night."""
    with database.sessions() as session:
        dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
        won = session.execute(
            dialect.insert(PeriodicRun)
            .values(name=f"nightly-backup:{instance_id}", started_at=slot, owner=owner)
            .on_conflict_do_update(
                index_elements=["name"],
                set_={"started_at": slot, "owner": owner},
                where=PeriodicRun.started_at < slot,
            )
            .returning(PeriodicRun.name)
        ).scalar()
        session.commit()
    return won is not None


def _prune(settings, database, instance_id: str, store, now: datetime) -> None:
    try:
        service.prune(settings, database, instance_id, store=store, now=now)
    except UserFacingError as exc:
        log.warning("retention for %s not applied: %s", instance_id, exc.message)


def destroyed_with_backups(database) -> list[str]:
    """Destroyed instances that still have a backup stored (a final one, until it expires)."""
    with database.sessions() as session:
        return list(
            session.scalars(
                select(Backup.instance_id)
                .distinct()
                .join(Instance, Instance.id == Backup.instance_id)
                .where(
                    Instance.status == InstanceStatus.DESTROYED.value,
                    Backup.status == service.Status.SUCCEEDED.value,
                )
            )
        )


def instances_with_backups(database) -> list[str]:
    with database.sessions() as session:
        return list(session.scalars(select(Backup.instance_id).distinct().order_by(Backup.instance_id)))


@dataclass(frozen=True)
class BackupHealth:
    """Ready instances (by subdomain) whose latest nightly backup failed, or that have had none for
    more than a day and a half (a missed night)."""

    failed: list[str]
    missing: list[str]


def backup_health(session, *, now: datetime | None = None, grace: timedelta = timedelta(hours=36)):
    now = now or utcnow()
    nightly = Backup.kind == service.Kind.NIGHTLY.value
    latest = (
        select(Backup.instance_id, func.max(Backup.started_at).label("at"))
        .where(nightly)
        .group_by(Backup.instance_id)
        .subquery()
    )
    rows = session.execute(
        select(Instance.subdomain, Instance.ready_at, latest.c.at, Backup.status)
        .outerjoin(latest, latest.c.instance_id == Instance.id)
        .outerjoin(
            Backup,
            (Backup.instance_id == latest.c.instance_id) & (Backup.started_at == latest.c.at) & nightly,
        )
        .where(Instance.status == InstanceStatus.READY.value)
        .order_by(Instance.subdomain)
    ).all()
    failed = [name for name, _, _, status in rows if status == service.Status.FAILED.value]
    missing = [
        name
        for name, ready_at, at, status in rows
        if status != service.Status.FAILED.value and (at or ready_at or now) < now - grace
    ]
    return BackupHealth(failed, missing)
