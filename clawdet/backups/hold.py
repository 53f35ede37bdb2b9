"""A restore holds the instance's work lease, as a worker's operation does, so no worker updates
the instance's server while its state is being swapped (and no restore starts during one)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import update

from clawdet.backups.service import BackupError
from clawdet.instances import leases
from db.models import Instance

LEASE = timedelta(minutes=5)


@contextmanager
def holding(database, instance_id: str) -> Iterator[None]:
    owner = f"restore:{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
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
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE.total_seconds() / 3):
            with database.sessions() as session:
                leases.renew(session, instance_id, owner, LEASE)

    renewer = threading.Thread(target=renew, name=f"restore-lease-{instance_id}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with database.sessions() as session:
            leases.release(session, instance_id, owner)
