"""The `clawdet` command's database and admin subcommands, as an operator runs them."""

import subprocess
import sys

from sqlalchemy import select

from db.migrate import current
from db.models import AuditLog, User
from tests.fixtures import REPO


def clawdet(args, database_url, tmp_path, stdin=""):
    env = {"DATABASE_URL": database_url, "CLAWDET_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "clawdet.cli", *args],
        env=env,
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_db_upgrade_is_idempotent(database_url, tmp_path):
    first = clawdet(["db", "upgrade"], database_url, tmp_path)
    assert first.returncode == 0, first.stderr
    assert clawdet(["db", "upgrade"], database_url, tmp_path).returncode == 0
    assert current(database_url) is not None
    assert "password" not in first.stdout.lower() or "***" in first.stdout


def test_create_admin_creates_then_promotes(database_url, database, tmp_path, client):
    from tests.fixtures.database import register

    result = clawdet(
        ["create-admin", "Root@Example.com", "--password-stdin"],
        database_url,
        tmp_path,
        stdin="admin password\n",
    )
    assert result.returncode == 0, result.stderr
    with database.session() as s:
        admin = s.scalar(select(User).where(User.email == "root@example.com"))
        assert admin.role == "admin" and admin.password_hash.startswith("$argon2id$")
        assert admin.email_verified  # typed by the operator: alerts reach it
    register(client, email="unsure@example.com")  # an address its account never confirmed
    unconfirmed = clawdet(["create-admin", "unsure@example.com"], database_url, tmp_path)
    assert unconfirmed.returncode == 1 and "has not confirmed that address" in unconfirmed.stderr
    client.post("/api/auth/logout")
    weak = clawdet(
        ["create-admin", "other@example.com", "--password-stdin"], database_url, tmp_path, stdin="short\n"
    )
    assert weak.returncode != 0 and "at least 8 characters" in weak.stderr
    r = client.post("/api/auth/login", json={"email": "root@example.com", "password": "admin password"})
    assert r.get_json()["user"]["role"] == "admin"


def test_operators_change_an_instance_from_the_cli(database_url, database, tmp_path, client):
    from db.models import Instance, utcnow
    from tests.fixtures.database import register

    register(client, email="cli-owner@example.com")
    instance_id = client.post("/api/instances", json={"subdomain": "clio"}).get_json()["instance"]["id"]
    with database.session() as session:
        row = session.get(Instance, instance_id)
        row.observed_generation, row.status, row.ready_at = row.generation, "ready", utcnow()

    restarted = clawdet(["instance", "restart", "clio"], database_url, tmp_path)
    assert restarted.returncode == 0, restarted.stderr
    assert "restart queued" in restarted.stdout
    busy = clawdet(["instance", "pause", "clio"], database_url, tmp_path)
    assert busy.returncode == 1 and "busy" in busy.stderr  # the restart is not converged yet
    shrink = clawdet(["instance", "tier", "clio", "pro"], database_url, tmp_path)
    assert shrink.returncode == 1 and "not a tier you can choose" in shrink.stderr  # the owner's plan
    missing = clawdet(["instance", "show", "nobody"], database_url, tmp_path)
    assert missing.returncode == 1 and "No active instance" in missing.stderr
    shown = clawdet(["instance", "show", "clio"], database_url, tmp_path)
    assert '"restarts": 1' in shown.stdout
    with database.sessions() as session:
        entries = session.scalars(select(AuditLog).where(AuditLog.target_id == instance_id)).all()
        assert any(e.action == "instance.restart" and e.actor.startswith("operator:") for e in entries)
