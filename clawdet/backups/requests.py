"""Owners' restores and exports: the web app queues them (it holds no backup key), a worker runs
each once (a conditional UPDATE claims it) and records the outcome; an export's outcome is a
time-limited download link."""

from __future__ import annotations

import enum
import logging
from datetime import timedelta

from sqlalchemy import exists, select, update

from clawdet.backups import export, hold, remote, remote_restore, restore, service
from clawdet.errors import UserFacingError
from clawdet.instances import leases
from db.models import Backup, BackupRequest, Instance, utcnow

log = logging.getLogger(__name__)

STALE = timedelta(hours=1)  # a request still "running" after this lost its worker
INTERRUPTED = (
    "The restore was interrupted; your assistant is back on the state it had before. Try the restore again."
)
GIVE_UP = timedelta(hours=6)  # a recovery that cannot reach the server hands the instance back then
UNRECOVERED = (
    "The restore was interrupted and its server could not be reached to put the previous state back. "
    "Contact support before restoring again."
)


class Action(str, enum.Enum):
    RESTORE = "restore"
    EXPORT = "export"


def request(
    session, instance: Instance, action: Action, backup_id: str | None, *, user_id: str
) -> BackupRequest:
    """Queues one (in the caller's transaction); the backup defaults to the newest stored one."""
    if instance.status != "ready" and action == Action.RESTORE:
        raise UserFacingError(
            "instance_not_ready",
            "Only a running, ready instance can be restored.",
            "Wait until it is ready (or resume it), then try again.",
            status=409,
        )
    backup = _chosen(session, instance, backup_id)
    busy = session.scalar(
        select(BackupRequest.id).where(
            BackupRequest.instance_id == instance.id, BackupRequest.status.in_(("queued", "running"))
        )
    )
    if busy is not None:
        raise UserFacingError(
            "backup_request_pending",
            "A restore or export of this instance is already under way.",
            "Wait for it to finish, then try again.",
            status=409,
        )
    queued = BackupRequest(
        instance_id=instance.id, action=Action(action).value, backup_id=backup.id, requested_by=user_id
    )
    session.add(queued)
    session.flush()
    return queued


def _chosen(session, instance: Instance, backup_id: str | None) -> Backup:
    """The named backup of any of the owner's instances (a destroyed one's final backup goes into
    its successor), else this instance's newest."""
    query = select(Backup).where(Backup.status == service.Status.SUCCEEDED.value)
    if backup_id:
        owners = select(Instance.id).where(Instance.user_id == instance.user_id)
        query = query.where(Backup.id == backup_id, Backup.instance_id.in_(owners))
    else:
        query = query.where(Backup.instance_id == instance.id)
    found = session.scalars(query.order_by(Backup.started_at.desc())).first()
    if found is None:
        raise UserFacingError(
            "backup_not_found",
            "There is no such backup of this instance." if backup_id else "This instance has no backup yet.",
            "Pick one from the list of backups.",
            status=404,
        )
    return found


def run_next(settings, database) -> BackupRequest | None:
    """Claims the oldest queued request and carries it out; None when there was none."""
    owner = hold.worker_name()
    recover_interrupted_restores(settings, database)
    with database.sessions() as session:
        # Requests whose worker died are failed, not run twice (restores after their recovery).
        session.execute(
            update(BackupRequest)
            .where(
                BackupRequest.status == "running",
                BackupRequest.started_at < utcnow() - STALE,
                ~exists().where(Instance.id == BackupRequest.instance_id, _held_by_its_restore()),
            )
            .values(
                status="failed", message="The worker running it stopped; ask again.", finished_at=utcnow()
            )
        )
        for request_id in session.scalars(
            select(BackupRequest.id)
            .where(BackupRequest.status == "queued")
            .order_by(BackupRequest.created_at)
        ).all():
            claimed = session.execute(
                update(BackupRequest)
                .where(BackupRequest.id == request_id, BackupRequest.status == "queued")
                .values(status="running", owner=owner, started_at=utcnow())
            ).rowcount
            session.commit()
            if claimed == 1:
                break
        else:
            session.commit()
            return None
        claimed_request = session.get(BackupRequest, request_id)
        instance_id, action, backup_id = (
            claimed_request.instance_id,
            claimed_request.action,
            claimed_request.backup_id,
        )
    outcome: dict = {"status": "done", "progress": 100}
    try:
        if action == Action.RESTORE.value:
            done = restore.restore(
                settings,
                database,
                instance_id,
                backup_id,
                step=lambda progress, message: service.saved(
                    database, BackupRequest, request_id, progress=progress, message=message
                ),
            )
            outcome["message"] = f"Restored; the state it replaced is backup {done.pre_restore_backup_id}."
        else:
            link = export.export_link(settings, database, backup_id)
            outcome.update(link=link.url, link_expires_at=link.expires_at, message="Ready to download.")
    except UserFacingError as exc:
        outcome.update(status="failed", message=f"{exc.message} {exc.action}".strip())
    except Exception:
        log.exception("backup request %s failed", request_id)
        outcome.update(status="failed", message="It failed unexpectedly; the operators have the details.")
    with database.sessions() as session:  # unless a recovery took it over meanwhile: its outcome stands
        # The owner fences it (a recovery takes the request over); the stale sweep does not.
        mine = (
            BackupRequest.id == request_id,
            BackupRequest.owner == owner,
        )
        if not session.execute(
            update(BackupRequest).where(*mine).values(**outcome, finished_at=utcnow())
        ).rowcount:
            log.warning(
                "backup request %s was taken over while it ran; its outcome is not this worker's", request_id
            )
        session.commit()
        row = session.get(BackupRequest, request_id)
        session.expunge(row)
    log.info("backup request %s (%s of %s): %s", request_id, action, instance_id, row.status)
    return row


def _held_by_its_restore():
    """The request's worker holds its instance for the restore, or died holding it (with the
    instance joined)."""
    return (BackupRequest.action == Action.RESTORE.value) & Instance.lease_owner.startswith(
        hold.PREFIX + BackupRequest.owner + ":"
    )


def recover_interrupted_restores(settings, database) -> None:
    """A restore whose worker died mid-way (its hold lapsed a full lease ago, leases.free) may
    have left the server half-swapped, with the gateway stopped: the previous state goes back and
    the request fails. This worker takes the hold over (and the request with it); when the server
    is out of reach, it lets that hold lapse, so the next try comes a lease or two later."""
    me = hold.worker_name()
    with database.sessions() as session:
        now = leases.database_now(session)
        stuck = session.execute(
            select(
                BackupRequest.id,
                BackupRequest.instance_id,
                BackupRequest.started_at,
                Instance.lease_owner,
                Instance.ipv4,
            )
            .join(Instance, Instance.id == BackupRequest.instance_id)
            .where(BackupRequest.status == "running", _held_by_its_restore(), leases.free(now, hold.LEASE))
        ).all()
    for request_id, instance_id, started_at, lapsed_owner, address in stuck:
        recoverer = f"{hold.PREFIX}{me}:recovery"
        with database.sessions() as session:
            now = leases.database_now(session)
            taken = session.execute(
                update(Instance)
                .where(
                    Instance.id == instance_id,
                    Instance.lease_owner == lapsed_owner,
                    leases.free(now, hold.LEASE),
                )
                .values(lease_owner=recoverer, lease_expires_at=now + hold.LEASE)
                .execution_options(synchronize_session=False)
            ).rowcount
            if taken == 1:
                session.execute(update(BackupRequest).where(BackupRequest.id == request_id).values(owner=me))
            session.commit()
        if taken != 1:
            continue  # another worker is on it
        log.warning(
            "backup request %s: the restore of %s was interrupted; recovering", request_id, instance_id
        )
        server = remote.Server(address, service.ssh_port(settings), settings.instance_ssh_private_key)
        try:
            remote_restore.recover(server)
        except Exception as exc:
            if started_at > utcnow() - GIVE_UP:
                log.warning("backup request %s: not recovered yet, tried again later: %s", request_id, exc)
                continue
            log.error(
                "backup request %s: the restore of %s could not be recovered: %s",
                request_id,
                instance_id,
                exc,
            )
            _finish_recovery(database, request_id, instance_id, recoverer, UNRECOVERED)
            continue
        _finish_recovery(database, request_id, instance_id, recoverer, INTERRUPTED)
        log.info("backup request %s: %s is back on its previous state", request_id, instance_id)


def _finish_recovery(database, request_id: str, instance_id: str, recoverer: str, message: str) -> None:
    """The request fails and the instance goes back to the reconciler, in one transaction."""
    with database.sessions() as session:
        session.execute(
            update(BackupRequest)
            .where(BackupRequest.id == request_id)
            .values(status="failed", message=message, progress=0, finished_at=utcnow())
        )
        session.execute(
            update(Instance)
            .where(Instance.id == instance_id, Instance.lease_owner == recoverer)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        session.commit()
