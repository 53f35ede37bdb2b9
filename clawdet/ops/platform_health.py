"""Is the platform itself up? The database, the Pulumi state backend and the cloud APIs, each
checked with a short timeout and cached for a few seconds so `/api/health` stays cheap under
load balancer polling."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from clawdet.errors import UserFacingError
from clawdet.settings import Settings, normalise_database_url
from db.engine import Database

TIMEOUT = 3.0
CACHE_SECONDS = 5.0  # the database and the state backend
CLOUD_CACHE_SECONDS = 60.0  # the cloud APIs: their quotas are not spent on load balancer polls


@dataclass
class Check:
    ok: bool
    error: str | None = None
    action: str | None = None

    def as_dict(self) -> dict:
        return {"ok": self.ok, **({"error": self.error, "action": self.action} if not self.ok else {})}


def check_database(database: Database) -> Check:
    try:
        database.ping()
        return Check(True)
    except Exception as exc:
        return Check(
            False,
            f"database unreachable ({type(exc).__name__})",
            "Check DATABASE_URL and that the database server runs.",
        )


def check_state_backend(settings: Settings) -> Check:
    url = settings.pulumi_backend_url
    try:
        if url.startswith("file://"):
            path = Path(url.removeprefix("file://"))
            probe = path
            while not probe.exists() and probe != probe.parent:
                probe = probe.parent  # the folder is created at the first operation
            if not probe.is_dir() or not os.access(probe, os.W_OK):
                return Check(
                    False,
                    f"Pulumi state folder {path} is not writable",
                    "Fix the folder's permissions or PULUMI_BACKEND_URL.",
                )
            return Check(True)
        if url.startswith(("postgres://", "postgresql://")):
            import psycopg

            with psycopg.connect(
                make_url(normalise_database_url(url))
                .set(drivername="postgresql")
                .difference_update_query(["table"])  # the engine's, not libpq's
                .render_as_string(hide_password=False),
                connect_timeout=int(TIMEOUT),
            ):
                return Check(True)
        if url.startswith(("s3://", "gs://", "azblob://", "https://")):
            return Check(True)  # checked by the engine at the next operation; no SDK here
        return Check(False, "PULUMI_BACKEND_URL has an unknown scheme", "Use file://, postgres:// or s3://.")
    except Exception as exc:
        return Check(
            False,
            f"Pulumi state backend unreachable ({type(exc).__name__})",
            "Check PULUMI_BACKEND_URL and that its server runs.",
        )


def check_clouds(settings: Settings) -> dict[str, Check]:
    from clawdet import cloud

    try:
        target = cloud.resolve(settings)
    except UserFacingError as exc:
        down = Check(False, exc.message, exc.action)
        return {"hetzner": down, "cloudflare": down}
    calls = {
        "hetzner": (f"{target.hcloud_endpoint.rstrip('/')}/locations", target.hcloud_token),
        "cloudflare": (
            f"{target.cloudflare_base_url.rstrip('/')}/zones/{target.zone_id}",
            target.cloudflare_token,
        ),
    }
    results = {}
    for name, (url, token) in calls.items():
        try:
            response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
            results[name] = (
                Check(True)
                if response.status_code < 400
                else Check(
                    False,
                    f"{name} API answered {response.status_code}",
                    "Check the API token and the provider's status page.",
                )
            )
        except httpx.HTTPError as exc:
            results[name] = Check(
                False,
                f"{name} API unreachable ({type(exc).__name__})",
                "Check the network, the endpoint setting, or start the sandbox.",
            )
    return results


@dataclass
class PlatformHealth:
    """Cached checks, refreshed single-flight: however many requests arrive when a cache runs
    out, one of them checks and the others wait for its answer."""

    settings: Settings
    database: Database
    cache_seconds: float = CACHE_SECONDS
    cloud_cache_seconds: float = CLOUD_CACHE_SECONDS
    _local: tuple[float, dict[str, Check]] | None = field(default=None, init=False)
    _clouds: tuple[float, dict[str, Check]] | None = field(default=None, init=False)
    _refresh: threading.Lock = field(default_factory=threading.Lock, init=False)

    def checks(self) -> dict[str, Check]:
        with self._refresh:
            now = time.monotonic()
            if self._local is None or now - self._local[0] >= self.cache_seconds:
                local = {
                    "database": check_database(self.database),
                    "pulumi_state": check_state_backend(self.settings),
                }
                self._local = (time.monotonic(), local)
            if self._clouds is None or now - self._clouds[0] >= self._cloud_ttl():
                self._clouds = (time.monotonic(), check_clouds(self.settings))
            return {**self._local[1], **self._clouds[1]}

    def _cloud_ttl(self) -> float:
        """Healthy clouds are checked once a minute; a cloud that was down, as often as the rest."""
        healthy = self._clouds is not None and all(check.ok for check in self._clouds[1].values())
        return self.cloud_cache_seconds if healthy else self.cache_seconds
