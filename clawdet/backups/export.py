"""Export: a backup's OpenClaw archive, decrypted, behind a time-limited download link. The
plaintext copy is put under `exports/` in the bucket with its expiry in its name, the link is a
presigned GET that ends at the same moment, and the nightly pass deletes expired copies."""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clawdet.backups import service
from clawdet.backups.store import BackupStore
from db.models import Instance, utcnow

log = logging.getLogger(__name__)

PREFIX = "exports/"
LINK_LIFETIME = timedelta(minutes=30)
_EXPIRY = re.compile(r"^exports/[^/]+/(\d{10})-[0-9a-f]{32}\.tar\.gz$")


@dataclass(frozen=True)
class ExportLink:
    url: str
    expires_at: datetime


def export_link(
    settings,
    database,
    backup_id: str,
    *,
    lifetime: timedelta = LINK_LIFETIME,
    store: BackupStore | None = None,
) -> ExportLink:
    if not timedelta(minutes=1) <= lifetime <= timedelta(days=7):  # a presigned URL lasts 7 days at most
        raise service.BackupError("invalid_lifetime", "A download link lasts from 1 minute to 7 days.")
    store = store or service.store_for(settings)
    expires = (utcnow() + lifetime).replace(microsecond=0)
    with service.work_folder(settings) as folder:
        archive = folder / "export.tar.gz"
        row = service.download(settings, database, backup_id, archive, store=store)
        key = f"{PREFIX}{row.instance_id}/{int(expires.timestamp())}-{secrets.token_hex(16)}.tar.gz"
        store.upload(key, archive, {"instance": row.instance_id, "backup": backup_id})
    with database.sessions() as session:
        subdomain = session.get(Instance, row.instance_id).subdomain
    filename = f"{subdomain}-{row.started_at:%Y-%m-%dT%H%M}Z.openclaw-backup.tar.gz"
    url = store.link(key, int(lifetime.total_seconds()), filename)
    log.info("export link for backup %s until %s", backup_id, expires.isoformat())
    return ExportLink(url, expires)


def delete_expired(store: BackupStore, now: datetime | None = None) -> int:
    now = now or utcnow()
    deleted = 0
    for key in store.keys(PREFIX):
        match = _EXPIRY.match(key)
        if match is None or datetime.fromtimestamp(int(match.group(1)), UTC) <= now:
            store.delete(key)
            deleted += 1
    return deleted
