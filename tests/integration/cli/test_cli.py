"""The `clawdet` command's database and admin subcommands, as an operator runs them."""

import subprocess
import sys

from sqlalchemy import select

from db.migrate import current
from db.models import User
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
    weak = clawdet(
        ["create-admin", "other@example.com", "--password-stdin"], database_url, tmp_path, stdin="short\n"
    )
    assert weak.returncode != 0 and "at least 8 characters" in weak.stderr
    r = client.post("/api/auth/login", json={"email": "root@example.com", "password": "admin password"})
    assert r.get_json()["user"]["role"] == "admin"
