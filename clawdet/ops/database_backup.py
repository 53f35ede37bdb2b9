"""Database backup and restore: pg_dump/pg_restore for PostgreSQL, SQLite's online backup API.

A backup folder holds `manifest.json` and `database.pgdump` (pg_dump's custom format) or
`database.sqlite3`. Restoring needs an empty database: it never merges into live data.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from clawdet.errors import UserFacingError
from db.engine import Database

DUMP_TIMEOUT = 1800.0  # seconds one pg_dump/pg_restore run may take
ATTEMPTS = 2  # a dropped connection is worth one more try; more would only hide a problem
MANIFEST = "manifest.json"


class BackupError(UserFacingError):
    status = 500


@dataclass(frozen=True)
class DatabaseDump:
    file: str
    dialect: str
    revision: str | None


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password (which goes to PGPASSWORD, not the process list)."""
    parsed = make_url(url)
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(tool: str, args: list[str], env: dict[str, str]) -> None:
    if shutil.which(tool) is None:
        raise BackupError(
            f"{tool}_missing",
            f"{tool} is not installed.",
            "Install PostgreSQL's client tools (Debian: apt-get install postgresql-client).",
        )
    last = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            done = subprocess.run(
                [tool, *args], env=env, capture_output=True, text=True, timeout=DUMP_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            last = f"timed out after {DUMP_TIMEOUT:.0f}s"
        else:
            if done.returncode == 0:
                return
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            last = last[0][:300]
            if "connection" not in last.lower():
                break  # not a network problem: trying again gives the same answer
        if attempt < ATTEMPTS:
            time.sleep(2)
    raise BackupError(
        f"{tool}_failed",
        f"{tool} failed: {last}",
        "Check that the database server is reachable and the URL is right, then run again.",
    )


def revision(database: Database) -> str | None:
    from db.migrate import current

    return current(database.url)


def dump(database: Database, folder: Path) -> DatabaseDump:
    folder.mkdir(parents=True, exist_ok=True)
    rev = revision(database)
    if database.is_postgres:
        url, env = _libpq(database.url)
        target = folder / "database.pgdump"
        _run(
            "pg_dump",
            ["--format=custom", "--no-owner", "--no-privileges", "--file", str(target), "--dbname", url],
            env,
        )
        return DatabaseDump(target.name, "postgresql", rev)
    target = folder / "database.sqlite3"
    source = sqlite3.connect(make_url(database.url).database, timeout=30)
    copy = sqlite3.connect(target)
    try:
        with copy:
            source.backup(copy)  # consistent even while workers write
    finally:
        copy.close()
        source.close()
    return DatabaseDump(target.name, "sqlite", rev)


def is_empty(database: Database) -> bool:
    with database.engine.connect() as connection:
        return not inspect(connection).get_table_names()


def restore(database: Database, folder: Path, dumped: DatabaseDump) -> None:
    if not is_empty(database):
        raise BackupError(
            "database_not_empty",
            "The target database already has tables.",
            "Restore into a new, empty database (create it, point DATABASE_URL at it, "
            "run `clawdet restore` again). Nothing was changed.",
            status=409,
        )
    source = folder / dumped.file
    if not source.is_file():
        raise BackupError("backup_incomplete", f"{source} is missing.", "Use a complete backup folder.")
    if dumped.dialect == "postgresql":
        if not database.is_postgres:
            raise BackupError(
                "dialect_mismatch",
                "This backup is of PostgreSQL; the target is SQLite.",
                "Restore into a PostgreSQL database.",
            )
        url, env = _libpq(database.url)
        _run(
            "pg_restore",
            ["--no-owner", "--no-privileges", "--exit-on-error", "--dbname", url, str(source)],
            env,
        )
        return
    if database.is_postgres:
        raise BackupError(
            "dialect_mismatch",
            "This backup is of SQLite; the target is PostgreSQL.",
            "Restore into a SQLite database (an empty DATABASE_URL file).",
        )
    database.dispose()
    backup = sqlite3.connect(source)
    target = sqlite3.connect(make_url(database.url).database, timeout=30)
    try:
        with target:
            backup.backup(target)
    finally:
        target.close()
        backup.close()


def write_manifest(folder: Path, dumped: DatabaseDump, **extra) -> Path:
    manifest = {
        "format": 1,
        "created_at": datetime.now(UTC).isoformat(),
        "database": {"file": dumped.file, "dialect": dumped.dialect, "revision": dumped.revision},
        **extra,
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise BackupError(
            "not_a_backup",
            f"{folder} has no readable {MANIFEST}.",
            "Point at a folder written by `clawdet backup`.",
            status=400,
        ) from exc


def dump_of(manifest: dict) -> DatabaseDump:
    entry = manifest["database"]
    return DatabaseDump(entry["file"], entry["dialect"], entry.get("revision"))
