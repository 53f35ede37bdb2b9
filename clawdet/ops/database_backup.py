"""Database backup and restore: pg_dump/pg_restore for PostgreSQL, SQLite's online backup API.

A backup folder holds `manifest.json` and `database.pgdump` (pg_dump's custom format) or
`database.sqlite3`. Restoring needs an empty database: it never merges into live data, and a
failed restore leaves the database empty (one transaction), so running it again finishes the job.
Everything a backup writes is readable by its owner only (0600 files, 0700 folders), whatever
the umask.
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
from clawdet.settings import STATE_TABLE
from db.engine import Database

DUMP_TIMEOUT = 1800.0  # seconds one pg_dump/pg_restore run may take
ATTEMPTS = 2  # a dropped connection is worth one more try; more would only hide a problem
MANIFEST = "manifest.json"
DUMP_FILES = {"postgresql": "database.pgdump", "sqlite": "database.sqlite3"}


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


def private_folder(path: Path) -> Path:
    """`path` (and any missing parents), made readable by its owner only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes | str) -> None:
    """Write `path` readable by its owner only (created 0600: the umask cannot widen it)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data.encode("utf-8") if isinstance(data, str) else data)
    path.chmod(0o600)


def revision(database: Database) -> str | None:
    from db.migrate import current

    return current(database.url)


def dump(database: Database, folder: Path) -> DatabaseDump:
    private_folder(folder)
    rev = revision(database)
    if database.is_postgres:
        url, env = _libpq(database.url)
        target = folder / DUMP_FILES["postgresql"]
        write_private(target, b"")  # pg_dump writes into it and keeps its mode
        _run(
            "pg_dump",
            [
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--exclude-table={STATE_TABLE}",  # the stacks' state is backed up stack by stack
                "--file",
                str(target),
                "--dbname",
                url,
            ],
            env,
        )
        target.chmod(0o600)
        return DatabaseDump(target.name, "postgresql", rev)
    target = folder / DUMP_FILES["sqlite"]
    write_private(target, b"")  # SQLite takes an empty file as a new database, and keeps its mode
    source = sqlite3.connect(make_url(database.url).database, timeout=30)
    copy = sqlite3.connect(target)
    try:
        with copy:
            source.backup(copy)  # consistent even while workers write
    finally:
        copy.close()
        source.close()
    target.chmod(0o600)
    return DatabaseDump(target.name, "sqlite", rev)


def is_empty(database: Database) -> bool:
    """No table of the platform's (the Pulumi state table a restore fills first is not one)."""
    with database.engine.connect() as connection:
        return not set(inspect(connection).get_table_names()) - {STATE_TABLE}


def check_restorable(database: Database, folder: Path, dumped: DatabaseDump) -> None:
    """Refuse, before anything is written, a restore that cannot work."""
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
        raise BackupError(
            "backup_incomplete", f"{source} is missing.", "Use a complete backup folder. Nothing was changed."
        )
    confined(folder, source)
    if dumped.dialect == "postgresql" and not database.is_postgres:
        raise BackupError(
            "dialect_mismatch",
            "This backup is of PostgreSQL; the target is SQLite.",
            "Restore into a PostgreSQL database.",
        )
    if dumped.dialect == "sqlite" and database.is_postgres:
        raise BackupError(
            "dialect_mismatch",
            "This backup is of SQLite; the target is PostgreSQL.",
            "Restore into a SQLite database (an empty DATABASE_URL file).",
        )


def restore(database: Database, folder: Path, dumped: DatabaseDump) -> None:
    """All or nothing: a failure leaves the database empty, ready for another try."""
    check_restorable(database, folder, dumped)
    source = folder / dumped.file
    if dumped.dialect == "postgresql":
        url, env = _libpq(database.url)
        _run(
            "pg_restore",
            ["--no-owner", "--no-privileges", "--single-transaction", "--dbname", url, str(source)],
            env,
        )
        return
    database.dispose()
    backup = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)
    target = sqlite3.connect(make_url(database.url).database, timeout=30)
    try:
        with target:
            backup.backup(target)  # one step: the whole copy or none of it
    except sqlite3.Error as exc:
        raise BackupError(
            "sqlite_restore_failed",
            f"Restoring {source.name} failed: {exc}.",
            "The database was left empty; check the backup file and run `clawdet restore` again.",
        ) from exc
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
    write_private(path, json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise not_a_backup(folder, f"{folder} has no readable {MANIFEST}.") from exc
    if not isinstance(manifest, dict):
        raise not_a_backup(folder, f"{folder / MANIFEST} is not a backup manifest.")
    return manifest


def confined(folder: Path, path: Path) -> Path:
    """`path`, refused when it (through a symbolic link, say) leads out of the backup folder."""
    if not path.resolve().is_relative_to(folder.resolve()):
        raise not_a_backup(folder, f"{path} leads out of the backup folder.")
    return path


def not_a_backup(folder: Path, message: str) -> BackupError:
    return BackupError(
        "not_a_backup",
        message,
        "Point at a folder written by `clawdet backup`. Nothing was changed.",
        status=400,
    )


def dump_of(manifest: dict, folder: Path) -> DatabaseDump:
    """The manifest's database entry; only the file name each dialect's dump always has (the
    manifest never chooses a path)."""
    entry = manifest.get("database")
    dialect = entry.get("dialect") if isinstance(entry, dict) else None
    if dialect not in DUMP_FILES or entry.get("file") != DUMP_FILES[dialect]:
        raise not_a_backup(
            folder,
            f"{folder / MANIFEST} does not name a database dump this version writes "
            f"({' or '.join(DUMP_FILES.values())}).",
        )
    revision = entry.get("revision")
    return DatabaseDump(DUMP_FILES[dialect], dialect, revision if isinstance(revision, str) else None)
