"""Is the platform itself up? Each tier checks what it holds: the web app checks the database;
the workers, which hold the state backend's and the clouds' credentials, check those once a
minute for the whole fleet and record what they found (`report`), which the web app reads. So
the web tier needs no cloud token, and load balancer polls never reach the cloud APIs.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.engine import make_url

from clawdet.errors import UserFacingError
from clawdet.instances.leases import database_now
from clawdet.settings import Settings, normalise_database_url
from clawdet.tls import verifying_context
from db.engine import Database
from db.models import PlatformCheck

TIMEOUT = 3.0
CACHE_SECONDS = 5.0  # how long a web process reuses what it read
REPORT_SECONDS = 60.0  # how often the fleet's workers check the state backend and the clouds
STALE_AFTER = timedelta(seconds=3 * REPORT_SECONDS)
WORKER_CHECKS = ("pulumi_state", "hetzner", "cloudflare")


@dataclass
class Check:
    ok: bool
    error: str | None = None
    action: str | None = None

    def as_dict(self) -> dict:
        return {"ok": self.ok, **({"error": self.error, "action": self.action} if not self.ok else {})}


def database_action() -> str:
    return "Check DATABASE_URL, that the database server runs and that `clawdet db upgrade` ran."


def check_database(database: Database) -> Check:
    try:
        database.ping()
        return Check(True)
    except Exception as exc:
        return Check(
            False,
            f"database unreachable ({type(exc).__name__})",
            database_action(),
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
            response = httpx.get(
                url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT, verify=verifying_context()
            )
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


def report(settings: Settings, database: Database) -> dict[str, Check]:
    """The workers' half, once a period for the fleet: check and record for the web app."""
    found = {"pulumi_state": check_state_backend(settings), **check_clouds(settings)}
    with database.sessions() as session:
        now = database_now(session)
        for name, check in found.items():
            session.merge(
                PlatformCheck(name=name, ok=check.ok, error=check.error, action=check.action, checked_at=now)
            )
        session.commit()
    return found


def reported(database: Database) -> dict[str, Check]:
    """What the workers last recorded; a check no worker made lately is down, and says so."""
    with database.sessions() as session:
        now = database_now(session)
        rows = {row.name: row for row in session.scalars(select(PlatformCheck))}
    checks = {}
    for name in WORKER_CHECKS:
        row = rows.get(name)
        if row is None or now - row.checked_at > STALE_AFTER:
            checks[name] = Check(
                False,
                f"no worker has checked {name} in the last {STALE_AFTER.seconds // 60} minutes",
                "Start a worker (clawdet worker) and read its log: workers check it once a minute.",
            )
        else:
            checks[name] = Check(row.ok, row.error, row.action)
    return checks


@dataclass
class PlatformHealth:
    """The web app's view, cached and refreshed single-flight: however many requests arrive when
    the cache runs out, one of them reads and the others wait for its answer."""

    database: Database
    cache_seconds: float = CACHE_SECONDS
    _cached: tuple[float, dict[str, Check]] | None = field(default=None, init=False)
    _refresh: threading.Lock = field(default_factory=threading.Lock, init=False)

    def checks(self) -> dict[str, Check]:
        with self._refresh:
            if self._cached is None or time.monotonic() - self._cached[0] >= self.cache_seconds:
                self._cached = (time.monotonic(), self._read())
            return self._cached[1]

    def _read(self) -> dict[str, Check]:
        database = check_database(self.database)
        if not database.ok:
            return {"database": database}  # nor can what the workers found be read
        try:
            return {"database": database, **reported(self.database)}
        except Exception as exc:
            return {
                "database": Check(False, f"database unreadable ({type(exc).__name__})", database_action())
            }
