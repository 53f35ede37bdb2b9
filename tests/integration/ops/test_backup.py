"""Backup, wipe, restore: the same users and instances come back, on SQLite and PostgreSQL
(the engine test in test_ops_flow.py adds the Pulumi stacks)."""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import make_url

from clawdet.ops import backup as stack_backup
from clawdet.ops import database_backup as db_backup
from clawdet.settings import normalise_database_url
from db.engine import Database
from db.models import AuditLog, Instance, User
from tests.fixtures.database import register


def snapshot(database: Database) -> dict:
    with database.sessions() as session:
        return {
            "users": sorted(
                (u.id, u.email, u.password_hash, u.role, u.session_version)
                for u in session.scalars(select(User))
            ),
            "instances": sorted(
                (i.id, i.stack_name, i.generation, i.status, i.llm_key_hash)
                for i in session.scalars(select(Instance))
            ),
            "audit": session.scalar(select(AuditLog.id).order_by(AuditLog.id.desc()).limit(1)),
        }


@pytest.fixture
def empty_database(database: Database, tmp_path):
    """Makes a new, empty database of the same kind (the 'wiped' server)."""
    made: list[tuple[Database, str | None]] = []

    def make() -> Database:
        if not database.is_postgres:
            target = Database(f"sqlite:///{tmp_path / f'restored{len(made)}.db'}")
            made.append((target, None))
            return target
        url = make_url(database.url)
        name = f"r_{secrets.token_hex(5)}"
        with psycopg.connect(_admin(url), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        target = Database(
            normalise_database_url(url.set(database=name).render_as_string(hide_password=False))
        )
        made.append((target, name))
        return target

    yield make
    for target, name in made:
        target.dispose()
        if name:
            with psycopg.connect(_admin(make_url(database.url)), autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _admin(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def test_backup_wipe_restore_round_trip(client, database, settings, tmp_path, empty_database):
    register(client, email="keep@example.com")
    assert client.post("/api/instances", json={"subdomain": "keepme"}).status_code == 202
    register(client.__class__(client.client.application.test_client()), email="also@example.com")
    before = snapshot(database)
    assert len(before["users"]) == 2 and len(before["instances"]) == 1

    report = stack_backup.backup(settings, database, tmp_path / "backup")
    assert report.database == ("postgresql" if database.is_postgres else "sqlite") and report.stacks == []
    with pytest.raises(Exception) as refused:
        stack_backup.backup(settings, database, tmp_path / "backup")
    assert getattr(refused.value, "code", "") == "backup_folder_not_empty"

    target = empty_database()
    stack_backup.restore(settings, target, tmp_path / "backup")
    assert snapshot(target) == before
    from db.migrate import current

    assert current(target.url) == current(database.url)

    with pytest.raises(Exception) as again:  # a restore never merges into live data
        stack_backup.restore(settings, target, tmp_path / "backup")
    assert getattr(again.value, "code", "") == "database_not_empty"
    assert snapshot(target) == before


def test_cli_backup_and_restore(database, settings, tmp_path, monkeypatch, empty_database):
    with database.session() as session:
        session.add(User(email="cli@example.com", name="Cli"))
    monkeypatch.setenv("DATABASE_URL", database.url)
    monkeypatch.setenv("CLAWDET_DATA_DIR", str(settings.data_dir))
    from clawdet.cli import main

    runner = CliRunner()
    done = runner.invoke(main, ["backup", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output
    assert "stacks=0" in done.output
    refused = runner.invoke(main, ["restore", str(tmp_path / "b")])
    assert refused.exit_code == 1 and "already has tables" in refused.output
    target = empty_database()
    monkeypatch.setenv("DATABASE_URL", target.url)
    restored = runner.invoke(main, ["restore", str(tmp_path / "b")])
    assert restored.exit_code == 0, restored.output
    with target.sessions() as session:
        assert session.scalar(select(User.email)) == "cli@example.com"


# -- restore: names and paths, newer state, resuming; private files -----------------------------

CHECKPOINT = "2026-03-01T10:00:00.123456789Z"


def deployment(name: str, time: str = CHECKPOINT, servers: int = 1) -> dict:
    urn = f"urn:pulumi:{name}::clawdet::hcloud:index/server:Server::{name}"
    return {
        "manifest": {"time": time, "magic": "m", "version": "v3.259.0"},
        "resources": [{"urn": f"{urn}-{n}", "outputs": {}} for n in range(servers)],
    }


class FakeStacks:
    """The two calls backup and restore make, over a dict; `fail_imports` names stacks whose next
    import fails (a crash part-way)."""

    def __init__(self, states: dict | None = None):
        self.states = dict(states or {})
        self.imported: list[str] = []
        self.fail_imports: set[str] = set()

    def export(self, name: str) -> dict:
        return self.states.get(name, {})

    def import_state(self, name: str, version: int, state: dict) -> None:
        if name in self.fail_imports:
            self.fail_imports.discard(name)
            raise RuntimeError(f"the engine stopped while importing {name}")
        assert version == stack_backup.DEPLOYMENT_VERSION
        self.states[name] = state
        self.imported.append(name)


@pytest.fixture
def project(settings, tmp_path):
    """Settings whose Pulumi project (stacks/ folder) is the test's own."""
    (tmp_path / "project" / "stacks").mkdir(parents=True)
    return replace(settings, project_dir=tmp_path / "project")


@pytest.fixture
def stacked_backup(client, database, project, tmp_path) -> Path:
    """A backup of two deployed instances, `alpha` and `beta`, with their stack files."""
    register(client, email="alpha@example.com")
    assert client.post("/api/instances", json={"subdomain": "alpha"}).status_code == 202
    other = client.__class__(client.client.application.test_client())
    register(other, email="beta@example.com")
    assert other.post("/api/instances", json={"subdomain": "beta"}).status_code == 202
    with database.session() as session:
        for row in session.scalars(select(Instance)):
            row.attempts = 1
    for name in ("alpha", "beta"):
        (project.project_dir / "stacks" / f"Pulumi.{name}.yaml").write_text(
            f"config:\n  clawdet:subdomain: {name}\n"
        )
    live = FakeStacks({name: deployment(name) for name in ("alpha", "beta")})
    umask = os.umask(0o022)  # the usual one, under which files are readable by everyone
    try:
        report = stack_backup.backup(project, database, tmp_path / "backup", stacks=live)
    finally:
        os.umask(umask)
    assert report.stacks == ["alpha", "beta"]
    for name in ("alpha", "beta"):  # the wiped host: no stack files
        (project.project_dir / "stacks" / f"Pulumi.{name}.yaml").unlink()
    return tmp_path / "backup"


def edit_manifest(folder: Path, **changes) -> None:
    path = folder / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def nothing_written(target: Database, project, stacks: FakeStacks) -> bool:
    return (
        db_backup.is_empty(target)
        and not stacks.imported
        and not any((project.project_dir / "stacks").iterdir())
    )


def test_backup_files_are_private_whatever_the_umask(stacked_backup):
    modes = {
        str(path.relative_to(stacked_backup)): stat.S_IMODE(path.stat().st_mode)
        for path in [stacked_backup, *stacked_backup.rglob("*")]
    }
    assert set(modes) == {
        ".",
        "manifest.json",
        "database.pgdump" if "database.pgdump" in modes else "database.sqlite3",
        "stacks",
        *(f"stacks/{name}.json" for name in ("alpha", "beta")),
        *(f"stacks/Pulumi.{name}.yaml" for name in ("alpha", "beta")),
    }
    for name, mode in modes.items():
        assert mode == (0o700 if name in {".", "stacks"} else 0o600), (name, oct(mode))


@pytest.mark.parametrize(
    "changes",
    [
        {"stacks": ["../../evil"]},
        {"stacks": ["/etc/passwd"]},
        {"stacks": ["alpha/../beta"]},
        {"stacks": [".."]},
        {"stacks": ["Alpha"]},
        {"stacks": ["alpha", "alpha"]},
        {"stacks": [7]},
        {"stacks": "alpha"},
        {"database": {"file": "../database.sqlite3", "dialect": "sqlite"}},
        {"database": {"file": "/etc/passwd", "dialect": "postgresql"}},
        {"database": "database.sqlite3"},
    ],
)
def test_restore_refuses_names_and_paths_the_manifest_should_not_give(
    stacked_backup, project, empty_database, changes
):
    edit_manifest(stacked_backup, **changes)
    target, stacks = empty_database(), FakeStacks()
    with pytest.raises(db_backup.BackupError) as refused:
        stack_backup.restore(project, target, stacked_backup, stacks=stacks)
    assert refused.value.code == "not_a_backup" and "Nothing was changed" in refused.value.action
    assert nothing_written(target, project, stacks)


def test_restore_refuses_files_that_lead_out_of_the_backup(stacked_backup, project, empty_database, tmp_path):
    outside = tmp_path / "outside.json"
    (stacked_backup / "stacks" / "beta.json").rename(outside)
    (stacked_backup / "stacks" / "beta.json").symlink_to(outside)
    target, stacks = empty_database(), FakeStacks()
    with pytest.raises(db_backup.BackupError, match="leads out of the backup folder"):
        stack_backup.restore(project, target, stacked_backup, stacks=stacks)
    assert nothing_written(target, project, stacks)


def test_restore_never_rolls_back_newer_stack_state_unless_told(stacked_backup, project, empty_database):
    later = deployment("beta", time="2026-03-02T08:00:00+01:00", servers=2)  # a server made since
    target, stacks = empty_database(), FakeStacks({"beta": later})
    with pytest.raises(db_backup.BackupError) as refused:
        stack_backup.restore(project, target, stacked_backup, stacks=stacks)
    assert refused.value.code == "stack_state_newer"
    assert "The state of beta is newer than this backup's copy" in refused.value.message
    assert "--overwrite-newer-stacks" in refused.value.action
    assert nothing_written(target, project, stacks) and stacks.states["beta"] == later

    stack_backup.restore(project, target, stacked_backup, stacks=stacks, overwrite_newer=True)
    assert sorted(stacks.imported) == ["alpha", "beta"] and stacks.states["beta"] == deployment("beta")
    assert not db_backup.is_empty(target)


@pytest.mark.parametrize(
    "current, verdict",
    [
        ({}, "restore"),
        (deployment("beta", servers=0), "restore"),  # a stack that holds nothing to lose
        (deployment("beta"), "restored"),
        (deployment("beta", time="2026-03-01T09:00:00Z", servers=3), "restore"),  # older
        (deployment("beta", time="2026-03-01T10:00:00.5+00:00"), "newer"),
        (deployment("beta", time="2026-03-01T11:30:00+01:00", servers=2), "newer"),  # 10:30 UTC
        (deployment("beta", servers=2), "newer"),  # the same time, other resources
        (deployment("beta", time="not a time"), "newer"),  # of unknown age
    ],
)
def test_a_stacks_state_is_compared_by_its_checkpoint(current, verdict):
    assert stack_backup.state_verdict(current, deployment("beta")) == verdict


def test_restore_after_a_failure_part_way_finishes_the_job(
    stacked_backup, project, empty_database, monkeypatch
):
    target, stacks = empty_database(), FakeStacks()
    stacks.fail_imports = {"beta"}
    with pytest.raises(RuntimeError, match="while importing beta"):
        stack_backup.restore(project, target, stacked_backup, stacks=stacks)
    assert stacks.imported == ["alpha"] and db_backup.is_empty(target)

    restore_database = db_backup.restore

    def database_fails_once(*args):
        monkeypatch.setattr(db_backup, "restore", restore_database)
        raise db_backup.BackupError("pg_restore_failed", "pg_restore failed: connection lost", "Run again.")

    monkeypatch.setattr(db_backup, "restore", database_fails_once)
    with pytest.raises(db_backup.BackupError, match="connection lost"):
        stack_backup.restore(project, target, stacked_backup, stacks=stacks)
    assert stacks.imported == ["alpha", "beta"] and db_backup.is_empty(target)

    report = stack_backup.restore(project, target, stacked_backup, stacks=stacks)
    assert report.stacks == ["alpha", "beta"] and stacks.imported == ["alpha", "beta"]  # none imported twice
    with target.sessions() as session:
        assert sorted(session.scalars(select(Instance.stack_name))) == ["alpha", "beta"]
    for name in ("alpha", "beta"):
        restored = project.project_dir / "stacks" / f"Pulumi.{name}.yaml"
        assert restored.read_text() == f"config:\n  clawdet:subdomain: {name}\n"


def test_a_database_restore_that_fails_leaves_it_empty_for_another_try(
    stacked_backup, project, empty_database
):
    dump = next(stacked_backup.glob("database.*"))
    whole = dump.read_bytes()
    if dump.suffix == ".pgdump":  # break a statement pg_restore runs after it has made the tables
        at = whole.rindex(b"ADD CONSTRAINT")
        dump.write_bytes(whole[:at] + b"ADD CONSTRAINX" + whole[at + len(b"ADD CONSTRAINT") :])
    else:
        dump.write_bytes(whole[: len(whole) // 2])
    target, stacks = empty_database(), FakeStacks()
    with pytest.raises(db_backup.BackupError) as failed:
        stack_backup.restore(project, target, stacked_backup, stacks=stacks)
    assert failed.value.code in {"pg_restore_failed", "sqlite_restore_failed"}
    assert db_backup.is_empty(target)
    dump.write_bytes(whole)
    stack_backup.restore(project, target, stacked_backup, stacks=stacks)
    assert not db_backup.is_empty(target)


def test_cli_restore_names_the_newer_stack_and_takes_the_flag(
    stacked_backup, project, empty_database, monkeypatch
):
    from clawdet.cli import main

    stacks = FakeStacks({"alpha": deployment("alpha", time="2027-01-01T00:00:00Z")})
    monkeypatch.setattr(stack_backup, "_stacks", lambda settings: stacks)
    target = empty_database()
    monkeypatch.setenv("DATABASE_URL", target.url)
    monkeypatch.setenv("CLAWDET_DATA_DIR", str(project.data_dir))
    monkeypatch.setenv("CLAWDET_PROJECT_DIR", str(project.project_dir))
    runner = CliRunner()
    refused = runner.invoke(main, ["restore", str(stacked_backup)])
    assert refused.exit_code == 1, refused.output
    assert "The state of alpha is newer than this backup's copy" in refused.output
    assert "Traceback" not in refused.output and db_backup.is_empty(target)
    done = runner.invoke(main, ["restore", str(stacked_backup), "--overwrite-newer-stacks"])
    assert done.exit_code == 0, done.output
    assert "stacks=2" in done.output and sorted(stacks.imported) == ["alpha", "beta"]
