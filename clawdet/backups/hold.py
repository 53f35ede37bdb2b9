"""A restore holds the instance's work lease, as a worker's operation does, so no worker updates
the instance's server while its state is being swapped (and no restore starts during one)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import update

from clawdet.backups.remote import RemoteError
from clawdet.backups.service import BackupError
from clawdet.instances import leases
from db.models import Instance

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)


class HoldLost(RemoteError):
    """Another worker took the instance over: this restore touches the server no more."""


PREFIX = "restore:"  # a restore's lease owner: restore:<worker>:<thread>


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def holding(database, instance_id: str) -> Iterator[Callable[[], None]]:
    """Yields `still_held`, for the restore to call before each step: it renews the hold and
    raises RemoteError once the hold is lost (it lapsed and another took the instance over)."""
    owner = f"{PREFIX}{worker_name()}:{threading.get_ident()}"
    with database.sessions() as session:
        now = leases.database_now(session)
        taken = session.execute(
            update(Instance)
            .where(Instance.id == instance_id, leases.free(now, LEASE))
            .values(lease_owner=owner, lease_expires_at=now + LEASE)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
    if taken != 1:
        raise BackupError(
            "instance_busy",
            "A worker is changing this instance right now, so it cannot be restored at this moment.",
            "Try again when its current operation has finished.",
            status=409,
        )
    stop, lost = threading.Event(), threading.Event()

    def renew() -> None:
        with database.sessions() as session:
            if not leases.renew(session, instance_id, owner, LEASE):
                lost.set()

    def keep_renewing() -> None:
        while not stop.wait(LEASE.total_seconds() / 3) and not lost.is_set():
            try:
                renew()
            except Exception:  # the database out of reach: the restore's next check fails instead
                log.warning("restore of %s: renewing its hold failed", instance_id, exc_info=True)

    def still_held() -> None:
        if not lost.is_set():
            renew()
        if lost.is_set():
            raise HoldLost("the restore lost its hold on the instance (another worker took it over)")

    renewer = threading.Thread(target=keep_renewing, name=f"restore-lease-{instance_id}", daemon=True)
    renewer.start()
    try:
        yield still_held
    finally:
        stop.set()
        renewer.join()
        with database.sessions() as session:
            leases.release(session, instance_id, owner)
