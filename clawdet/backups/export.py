"""Export: a backup's OpenClaw archive behind a time-limited download link.

The worker opens the backup, seals the archive again with a fresh random key and puts that copy
under `exports/` in the bucket, its expiry in its name (the nightly pass deletes expired ones).
The key travels only in the link: its token holds the key, a presigned address of the sealed copy
and the expiry, itself sealed with a key derived from SECRET_KEY (which the web app and the
workers share). So the bucket holds only ciphertext, and the database (which keeps the link for
the owner's dashboard) and request logs hold only the sealed token. The web app's
download endpoint opens the token, fetches the sealed copy and decrypts it on the fly.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clawdet.backups import encryption, service
from clawdet.backups.service import BackupError
from clawdet.backups.store import BackupStore
from db.models import Instance, utcnow

log = logging.getLogger(__name__)

PREFIX = "exports/"
LINK_LIFETIME = timedelta(minutes=30)
EXPORT_KEY_VERSION = 0  # in the sealed copy's header: a one-off key, not an instance's
LINK_PURPOSE = b"clawdet/export-link/1"
FETCH_TIMEOUT = 60.0
# Plain copies (`.tar.gz`) were made before exports were sealed: their links, presigned addresses
# of the bucket, work until they expire, and they are deleted then like the sealed ones.
_EXPIRY = re.compile(r"^exports/[^/]+/(\d{10})-[0-9a-f]{32}\.(?:tar\.gz|clawbk)$")


@dataclass(frozen=True)
class ExportLink:
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class Download:
    """What a link's token carries."""

    instance_id: str
    source: str = field(repr=False)  # a presigned GET of the sealed copy
    key: bytes = field(repr=False)
    filename: str
    expires_at: datetime


def download_path(instance_id: str, token: str) -> str:
    """The web app's download endpoint (webapp/backups.py)."""
    return f"/api/instances/{instance_id}/exports/{token}"


def export_link(
    settings,
    database,
    backup_id: str,
    *,
    lifetime: timedelta = LINK_LIFETIME,
    store: BackupStore | None = None,
) -> ExportLink:
    if not timedelta(minutes=1) <= lifetime <= timedelta(days=7):  # a presigned URL lasts 7 days at most
        raise BackupError("invalid_lifetime", "A download link lasts from 1 minute to 7 days.")
    store = store or service.store_for(settings)
    export_key = secrets.token_bytes(encryption.KEY_BYTES)
    with service.work_folder(settings) as folder:
        archive, sealed = folder / "export.tar.gz", folder / "export.clawbk"
        row = service.download(settings, database, backup_id, archive, store=store)
        with archive.open("rb") as source, sealed.open("wb") as target:
            encryption.encrypt(source, target, export_key, EXPORT_KEY_VERSION)
        archive.unlink()
        expires = (utcnow() + lifetime).replace(microsecond=0)  # from now: a big backup took a while
        name = f"{PREFIX}{row.instance_id}/{int(expires.timestamp())}-{secrets.token_hex(16)}.clawbk"
        store.upload(name, sealed, {"instance": row.instance_id, "backup": backup_id})
    with database.sessions() as session:
        subdomain = session.get(Instance, row.instance_id).subdomain
    download = Download(
        instance_id=row.instance_id,
        source=store.link(name, int(lifetime.total_seconds())),
        key=export_key,
        filename=f"{subdomain}-{row.started_at:%Y-%m-%dT%H%M}Z.openclaw-backup.tar.gz",
        expires_at=expires,
    )
    token = seal_token(settings.secret_key, download)
    log.info("export link for backup %s until %s", backup_id, expires.isoformat())
    return ExportLink(settings.public_url + download_path(row.instance_id, token), expires)


def seal_token(secret_key: str, download: Download) -> str:
    body = json.dumps(
        {
            "instance": download.instance_id,
            "source": download.source,
            "key": base64.b64encode(download.key).decode(),
            "filename": download.filename,
            "expires": int(download.expires_at.timestamp()),
        }
    ).encode()
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(_link_key(secret_key)).encrypt(nonce, body, LINK_PURPOSE)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


def opened_token(secret_key: str, token: str, now: datetime | None = None) -> Download:
    """The link's content; BackupError when the token was not sealed here or has expired."""
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(AESGCM(_link_key(secret_key)).decrypt(sealed[:12], sealed[12:], LINK_PURPOSE))
        download = Download(
            instance_id=body["instance"],
            source=body["source"],
            key=base64.b64decode(body["key"]),
            filename=body["filename"],
            expires_at=datetime.fromtimestamp(body["expires"], UTC),
        )
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise BackupError(
            "link_invalid", "This download link is not valid.", "Ask for a new download.", status=404
        ) from None
    if download.expires_at <= (now or utcnow()):
        raise _expired()
    return download


def decrypted_archive(download: Download) -> tuple[int | None, Iterator[bytes]]:
    """The archive's size (when the store tells) and its bytes, decrypted as they arrive. The first
    chunk is checked before this returns, so a missing or changed copy is an error, not a broken
    download; a later bad chunk ends the download short of its size."""
    try:
        response = urllib.request.urlopen(download.source, timeout=FETCH_TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code in (403, 404):  # the presigned address ended, or the copy was deleted
            raise _expired() from None
        raise _unavailable(f"HTTP {exc.code}") from None
    except OSError as exc:
        raise _unavailable(type(exc).__name__) from None
    length = response.headers.get("Content-Length")
    chunks = encryption.decrypted_chunks(response, download.key)
    try:
        first = next(chunks)
    except encryption.CorruptBackup as exc:
        response.close()
        raise BackupError(
            "backup_corrupt",
            f"The exported copy cannot be opened: {exc}.",
            "Ask for a new download.",
            status=409,
        ) from None

    def body() -> Iterator[bytes]:
        try:
            yield first
            yield from chunks
        except encryption.CorruptBackup as exc:
            log.warning("export download of %s cut short: %s", download.instance_id, exc)
        finally:
            response.close()

    return (encryption.plaintext_size(int(length)) if length else None), body()


def delete_expired(store: BackupStore, now: datetime | None = None) -> int:
    now = now or utcnow()
    deleted = 0
    for key in store.keys(PREFIX):
        match = _EXPIRY.match(key)
        if match is None or datetime.fromtimestamp(int(match.group(1)), UTC) <= now:
            store.delete(key)
            deleted += 1
    return deleted


def _link_key(secret_key: str) -> bytes:
    derivation = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LINK_PURPOSE)
    return derivation.derive(secret_key.encode())


def _expired() -> BackupError:
    return BackupError(
        "link_expired", "This download link has expired.", "Ask for a new download.", status=410
    )


def _unavailable(reason: str) -> BackupError:
    return BackupError(
        "backup_store_unavailable",
        f"The exported copy cannot be fetched from the backup storage ({reason}).",
        "Try again in a minute.",
        status=503,
    )
