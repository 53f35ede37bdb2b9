"""Work claiming: one stack, one worker. A lease is a conditional UPDATE in the database (with
`FOR UPDATE SKIP LOCKED` on PostgreSQL so workers do not queue behind each other's rows); a
lease left by a dead worker expires and, a full lease later, another worker takes the row over.

Every lease time is the database's clock, never a host's: hosts whose clocks disagree still
agree on who holds a stack. The worker side of the rule (a worker that cannot renew stops its
engine before its lease can expire) is in the reconciler's heartbeat."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from clawdet.ops import metrics as ops_metrics
from db.models import BackupRequest, Instance, PeriodicRun, utcnow


def needs_work():
    return or_(Instance.generation > Instance.observed_generation, Instance.requested_action.is_not(None))


def queued(session: Session, only: str | None = None) -> list[tuple[str, str]]:
    """Every instance waiting for work, with what will be done: (stack, action)."""
    query = select(Instance).where(needs_work()).order_by(Instance.stack_name)
    if only:
        query = query.where(Instance.stack_name == only)
    return [
        (i.stack_name, i.requested_action or ("destroy" if i.desired_state == "destroyed" else "up"))
        for i in session.scalars(query)
    ]


def unresolved(session: Session, only: str | None = None) -> list[Instance]:
    """Instances still waiting for work or failed: what a GitOps run reports as not converged."""
    query = select(Instance).where(needs_work() | (Instance.status == "failed"))
    if only:
        query = query.where(Instance.stack_name == only)
    return list(session.scalars(query.order_by(Instance.stack_name)))


def database_now(session: Session) -> datetime:
    """The database's clock (SQLite is embedded: its clock is this host's)."""
    if session.bind.dialect.name != "postgresql":
        return utcnow()
    return session.scalar(text("SELECT now() AT TIME ZONE 'UTC'")).replace(tzinfo=UTC)


def free(now: datetime, lease: timedelta):
    """Released, or abandoned a full lease ago: its holder, if alive but cut off, has stopped
    its engine by its lease's end (the heartbeat's rule), so nothing of it still runs."""
    return or_(Instance.lease_expires_at.is_(None), Instance.lease_expires_at < now - lease)


# A restore's hold (clawdet/backups/hold.py) whose restore request still runs, its worker dead:
# only that restore's recovery takes it over (the server may be half-swapped; an update must not
# run on it first). Any other leftover hold lapses like a lease.
RESTORE_HOLD = "restore:%"


def _held_by_a_running_restore():
    running = exists().where(
        BackupRequest.instance_id == Instance.id,
        BackupRequest.action == "restore",
        BackupRequest.status == "running",
    )
    return Instance.lease_owner.like(RESTORE_HOLD) & running


def due(now: datetime, lease: timedelta):
    return (
        or_(Instance.next_attempt_at.is_(None), Instance.next_attempt_at <= now),
        free(now, lease),
        ~_held_by_a_running_restore(),
    )


@dataclass(frozen=True)
class Claim:
    instance_id: str
    generation: int
    taken_over_from: str | None  # the owner of an expired lease: that worker died mid-operation


def claim_next(session: Session, owner: str, lease: timedelta, *, only: str | None = None) -> Claim | None:
    now = database_now(session)
    query = (
        select(Instance.id, Instance.generation, Instance.lease_owner)
        .where(needs_work(), *due(now, lease))
        .order_by(Instance.next_attempt_at.is_not(None), Instance.next_attempt_at, Instance.updated_at)
        .limit(5)
    )
    if only:
        query = query.where(Instance.stack_name == only)
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Instance)
    for instance_id, generation, previous_owner in session.execute(query).all():
        taken = session.execute(
            update(Instance)
            .where(Instance.id == instance_id, *due(now, lease)[1:])
            .values(lease_owner=owner, lease_expires_at=now + lease)
            .execution_options(synchronize_session=False)
        ).rowcount
        if taken == 1:
            if previous_owner is not None:  # its holder died or was cut off mid-operation
                ops_metrics.increment(session, "clawdet_lease_takeovers_total")
            session.commit()
            return Claim(instance_id, generation, previous_owner)
    session.commit()
    return None


def renew(session: Session, instance_id: str, owner: str, lease: timedelta) -> bool:
    renewed = session.execute(
        update(Instance)
        .where(Instance.id == instance_id, Instance.lease_owner == owner)
        .values(lease_expires_at=database_now(session) + lease)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return renewed == 1


def release(session: Session, instance_id: str, owner: str) -> None:
    session.execute(
        update(Instance)
        .where(Instance.id == instance_id, Instance.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def claim_period(session: Session, name: str, owner: str, every: timedelta) -> bool:
    """Whether `owner` runs the fleet-wide job `name` now: yes when nobody started it within
    `every` (by the database's clock), so the fleet runs it once a period, whatever the number
    of workers. One conditional upsert: two claims at once cannot both win."""
    now = database_now(session)
    insert = (postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert)(PeriodicRun)
    won = session.execute(
        insert.values(name=name, started_at=now, owner=owner)
        .on_conflict_do_update(
            index_elements=["name"],
            set_={"started_at": now, "owner": owner},
            where=PeriodicRun.started_at <= now - every,
        )
        .returning(PeriodicRun.name)
    ).scalar()
    session.commit()
    return won is not None
