"""Backup, wipe, restore: the same users and instances come back, on SQLite and PostgreSQL
(the engine test in test_ops_flow.py adds the Pulumi stacks)."""

from __future__ import annotations

import secrets

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import make_url

from clawdet.ops import backup as stack_backup
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
