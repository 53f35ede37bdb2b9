"""The backup bucket: S3-compatible object storage (Hetzner Object Storage, or the sandbox's S3
server), through boto3 with connect and read timeouts and bounded retries."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from clawdet.errors import UserFacingError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
MAX_ATTEMPTS = 4  # botocore's "standard" retry mode: backoff with jitter, throttling and 5xx
TRANSFER = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024)


class StoreError(UserFacingError):
    pass


@dataclass(frozen=True)
class StoreConfig:
    endpoint: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)

    @classmethod
    def of(cls, settings) -> StoreConfig:
        """From BACKUP_S3_*; in sandbox mode the sandbox's S3 server fills what is unset."""
        values = {
            "endpoint": settings.backup_s3_endpoint,
            "bucket": settings.backup_s3_bucket,
            "region": settings.backup_s3_region,
            "access_key_id": settings.backup_s3_access_key_id,
            "secret_access_key": settings.backup_s3_secret_access_key,
        }
        if settings.sandbox and not values["endpoint"]:
            described = _sandbox_s3(settings)
            values.update({name: described[name] for name in values if described.get(name)})
        if not values["endpoint"]:
            raise StoreError(
                "backups_not_configured",
                "Backups have nowhere to go: BACKUP_S3_ENDPOINT is not set.",
                "Set the BACKUP_S3_* variables (README, Backups).",
                status=503,
            )
        return cls(**values)


class BackupStore:
    def __init__(self, config: StoreConfig):
        self.config = config
        self.bucket = config.bucket
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint,
            region_name=config.region,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            config=Config(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                # S3-compatible stores (Hetzner's among them) do not all take the newer checksums.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise self._failed("reach the bucket", exc)
            self._call("create the bucket", self.client.create_bucket, Bucket=self.bucket)

    def upload(self, key: str, path: Path, metadata: dict[str, str]) -> None:
        self._call(
            "upload a backup",
            self.client.upload_file,
            str(path),
            self.bucket,
            key,
            ExtraArgs={"Metadata": metadata},
            Config=TRANSFER,
        )

    def download(self, key: str, path: Path) -> None:
        self._call(
            "download a backup", self.client.download_file, self.bucket, key, str(path), Config=TRANSFER
        )

    def delete(self, key: str) -> None:
        self._call("delete a backup", self.client.delete_object, Bucket=self.bucket, Key=key)

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._failed("look a backup up", exc)

    def keys(self, prefix: str) -> list[str]:
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                found += [item["Key"] for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise self._failed("list backups", exc)
        return found

    def link(self, key: str, seconds: int) -> str:
        """A time-limited download address of one object."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=seconds
        )

    def _call(self, what: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise self._failed(what, exc)

    def _failed(self, what: str, exc: Exception) -> StoreError:
        # botocore's messages name the operation and the code, never the credentials.
        log.warning("backup store: could not %s: %s", what, type(exc).__name__)
        return StoreError(
            "backup_store_unavailable",
            f"Could not {what} in the backup storage ({_code(exc) or type(exc).__name__}).",
            "Check BACKUP_S3_ENDPOINT and its credentials; the next run tries again.",
            status=503,
        )


def _sandbox_s3(settings) -> dict[str, str]:
    from clawdet import cloud

    try:
        return json.loads(cloud.sandbox_description_path(settings).read_text()).get("s3") or {}
    except (OSError, ValueError):
        return {}


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""
