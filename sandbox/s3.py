"""S3-compatible object storage on loopback: moto's S3 in server mode (a real HTTP S3 API, signed
requests, multipart uploads, presigned URLs), with the backup bucket made at start.

moto keeps objects in memory: they live as long as the sandbox process (a restart empties the
bucket). Its state is per process, so two sandboxes in one process share one store.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

log = logging.getLogger(__name__)

BUCKET = "clawdet-backups"
REGION = "us-east-1"


class S3Server:
    def __init__(self, host: str, port: int, credentials: tuple[str, str]) -> None:
        self.host, self.requested_port = host, port
        self.access_key_id, self.secret_access_key = credentials
        self._server: ThreadedMotoServer | None = None
        self.url = ""

    def start(self) -> S3Server:
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.requested_port, verbose=False)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self.client().create_bucket(Bucket=BUCKET)
        log.info("sandbox S3 on %s, bucket %s", self.url, BUCKET)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self):
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(connect_timeout=2, read_timeout=30, retries={"max_attempts": 2}),
        )

    def describe(self) -> dict[str, Any]:
        """Named as the BACKUP_S3_* settings name them (clawdet/backups/store.py reads this)."""
        return {
            "endpoint": self.url,
            "bucket": BUCKET,
            "region": REGION,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
        }


def new_credentials() -> tuple[str, str]:
    return "SANDBOX" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30)
