"""One backup, end to end: made and verified on the server (remote.py), encrypted here with the
instance's key (encryption.py) and uploaded (store.py); the `backups` row records each step's
result. Plaintext archives exist only in a 0700 work folder and only until they are sealed."""

from __future__ import annotations

import enum
import logging
import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from clawdet.backups import encryption, remote, retention
from clawdet.backups.store import BackupStore, StoreConfig
from clawdet.errors import UserFacingError
from clawdet.instances import credentials
from db.models import Backup, Instance, utcnow

log = logging.getLogger(__name__)

KEY_VERSION = 1  # the backup key's version new backups are sealed with
FAILED_ROWS_KEPT = timedelta(days=31)


class Kind(str, enum.Enum):
    NIGHTLY = "nightly"
    MANUAL = "manual"
    FINAL = "final"  # made on destroy, kept BACKUP_FINAL_RETENTION_DAYS
    PRE_RESTORE = "pre_restore"  # the state a restore replaced


class Status(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DELETED = "deleted"


class BackupError(UserFacingError):
    pass


def object_key(instance_id: str, backup_id: str) -> str:
    return f"instances/{instance_id}/{backup_id}.tar.gz.clawbk"


def store_for(settings) -> BackupStore:
    """The backup storage, for a process that may seal and open backups: never with a
    CREDENTIALS_ROOT made up on this host outside the sandbox (its backups would open nowhere
    else, and retention would count them as good)."""
    if "CREDENTIALS_ROOT" in settings.generated and not settings.sandbox:
        raise BackupError(
            "credentials_root_not_set",
            "CREDENTIALS_ROOT is not set on this host, so its backups could be opened nowhere else.",
            "Set it as on the workers (worker.env), then try again.",
            status=503,
        )
    return BackupStore(StoreConfig.of(settings))


def create(settings, database, instance_id: str, kind: Kind, *, store: BackupStore | None = None) -> Backup:
    """Backs the instance up now; returns the finished row (status succeeded or failed)."""
    store = store or store_for(settings)
    with database.sessions() as session:
        instance = session.get(Instance, instance_id)
        if instance is None:
            raise BackupError("instance_not_found", f"No instance {instance_id!r}.", status=404)
        if not instance.ipv4 or not instance.server_id:
            raise BackupError(
                "instance_not_running",
                f"{instance.subdomain} has no server running, so there is nothing to back up now.",
                "Resume it first; its latest backup is still listed.",
                status=409,
            )
        row = Backup(instance_id=instance_id, kind=Kind(kind).value, key_version=KEY_VERSION)
        if row.kind == Kind.FINAL.value:
            row.expires_at = utcnow() + timedelta(days=settings.backup_final_retention_days)
        session.add(row)
        session.commit()
        backup_id, address = row.id, instance.ipv4
    server = remote.Server(address, ssh_port(settings), settings.instance_ssh_private_key)
    outcome: dict = {}
    try:
        with work_folder(settings) as folder:
            archive = remote.fetch_backup(server, backup_id, folder / "archive.tar.gz")
            outcome.update(archive_size=archive.size, verified=archive.verified)
            outcome.update(verify_message=archive.verify_message, verified_at=utcnow())
            if not archive.verified:
                raise remote.RemoteError("the archive failed OpenClaw's verification; nothing was stored")
            sealed = folder / "archive.clawbk"
            key = credentials.backup_key(settings.credentials_root, instance_id, KEY_VERSION)
            with archive.path.open("rb") as source, sealed.open("wb") as target:
                outcome["size"] = encryption.encrypt(source, target, key, KEY_VERSION)
            archive.path.unlink()
            key_name = object_key(instance_id, backup_id)
            metadata = {"instance": instance_id, "kind": kind, "key-version": str(KEY_VERSION)}
            store.upload(key_name, sealed, metadata)
            outcome.update(object_key=key_name, status=Status.SUCCEEDED.value, message="")
    except (remote.RemoteError, UserFacingError, OSError) as exc:
        message = exc.message if isinstance(exc, UserFacingError) else str(exc)
        log.warning("backup %s of %s failed: %s", backup_id, instance_id, message)
        outcome.update(status=Status.FAILED.value, message=message[:2000])
    row = saved(database, Backup, backup_id, **outcome, finished_at=utcnow())
    log.info("backup %s of %s: %s", backup_id, instance_id, row.status)
    return row


@contextmanager
def work_folder(settings) -> Iterator[Path]:
    parent = settings.data_dir / "backup-work"
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(parent, 0o700)
    with tempfile.TemporaryDirectory(dir=parent) as folder:
        yield Path(folder)


def download(settings, database, backup_id: str, target: Path, *, store: BackupStore | None = None) -> Backup:
    """The backup's OpenClaw archive, decrypted, at `target`; BackupError (and no file) when the
    stored copy is missing, changed or not sealed with the instance's key."""
    store = store or store_for(settings)
    row = stored_backup(database, backup_id)
    key = credentials.backup_key(settings.credentials_root, row.instance_id, row.key_version)
    with work_folder(settings) as folder:
        sealed = folder / "archive.clawbk"
        store.download(row.object_key, sealed)
        try:
            with sealed.open("rb") as source, private_file(target) as plain:
                encryption.decrypt(source, plain, key)
        except encryption.CorruptBackup as exc:
            target.unlink(missing_ok=True)
            raise BackupError(
                "backup_corrupt",
                f"Backup {backup_id} cannot be opened: {exc}.",
                "Restore an older backup; this one is kept for inspection.",
                status=409,
            )
    return row


def private_file(path: Path) -> BinaryIO:
    """A new file that only its owner can read from the moment it exists (no umask window)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def verify(settings, database, backup_id: str, *, store: BackupStore | None = None) -> Backup:
    """Checks the stored copy: it decrypts (every chunk authenticated) to an archive with
    OpenClaw's manifest. Records the result on the row."""
    with work_folder(settings) as folder:
        archive = folder / "archive.tar.gz"
        try:
            download(settings, database, backup_id, archive, store=store)
            manifest = archive_manifest(archive)
            ok, message = True, f"decrypts to an OpenClaw archive ({len(manifest.get('assets', []))} assets)"
        except BackupError as exc:
            ok, message = False, exc.message
    return saved(database, Backup, backup_id, verified=ok, verify_message=message, verified_at=utcnow())


def saved(database, model, row_id: str, **fields):
    """The row with `fields` written, committed and detached."""
    with database.sessions() as session:
        row = session.get(model, row_id)
        for name, value in fields.items():
            setattr(row, name, value)
        session.commit()
        session.refresh(row)
        session.expunge(row)
    return row


def archive_manifest(path: Path) -> dict:
    """OpenClaw's manifest.json at the archive's root; BackupError when there is none."""
    import json

    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.isfile() and member.name.count("/") == 1 and member.name.endswith("/manifest.json"):
                    handle = archive.extractfile(member)
                    return json.loads(handle.read()) if handle else {}
    except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
        raise BackupError("backup_corrupt", f"The archive cannot be read ({type(exc).__name__}).")
    raise BackupError("backup_corrupt", "The archive has no OpenClaw manifest.")


def listed(database, instance_id: str) -> list[Backup]:
    """The instance's backups that exist or failed, newest first."""
    with database.sessions() as session:
        rows = listed_in(session, instance_id)
        session.expunge_all()
        return rows


def listed_in(session, instance_id: str) -> list[Backup]:
    return list(
        session.scalars(
            select(Backup)
            .where(Backup.instance_id == instance_id, Backup.status != Status.DELETED.value)
            .order_by(Backup.started_at.desc())
        )
    )


def prune(
    settings, database, instance_id: str, *, store: BackupStore | None = None, now: datetime | None = None
) -> list[str]:
    """Applies retention to one instance: 7 daily, 4 weekly, 3 monthly of its backups (none once
    it is destroyed); a backup with an expiry (a final one) until then; failed rows for a month.
    Returns the ids deleted."""
    now = now or utcnow()
    store = store or store_for(settings)
    with database.sessions() as session:
        destroyed = session.get(Instance, instance_id).status == "destroyed"
        rows = session.scalars(
            select(Backup).where(Backup.instance_id == instance_id, Backup.status != Status.DELETED.value)
        ).all()
        succeeded = [r for r in rows if r.status == Status.SUCCEEDED.value]
        rotating = [r for r in succeeded if r.expires_at is None]  # the others: until they expire
        keep = retention.to_keep([] if destroyed else [(r.id, r.started_at) for r in rotating])
        doomed = [r for r in rotating if r.id not in keep]
        doomed += [r for r in succeeded if r.expires_at is not None and r.expires_at <= now]
        stale = [r for r in rows if r.status == Status.FAILED.value and r.started_at < now - FAILED_ROWS_KEPT]
        deleted = []
        for row in doomed:
            store.delete(row.object_key)
            row.status, row.deleted_at = Status.DELETED.value, now
            deleted.append(row.id)
            session.commit()  # each one as it goes: a store failure later keeps what was done
        for row in stale:
            session.delete(row)
        session.commit()
    return deleted


def stored_backup(database, backup_id: str) -> Backup:
    with database.sessions() as session:
        row = session.get(Backup, backup_id)
        if row is None or row.status != Status.SUCCEEDED.value or not row.object_key:
            raise BackupError("backup_not_found", f"No stored backup {backup_id!r}.", status=404)
        session.expunge(row)
        return row


def ssh_port(settings) -> int:
    if not settings.sandbox:
        return settings.instance_ssh_port
    from clawdet import cloud

    return cloud.resolve(settings).ssh_port
