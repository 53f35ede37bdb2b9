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


def test_the_web_app_and_the_proxy_refuse_secrets_they_must_not_hold(database_url, tmp_path):
    """Hardening (issue 16, item 9): a leak of the public tier's environment must not reach the
    clouds, the stacks, the instances' LLM keys or (from the proxy) the gateways, so those
    processes never hold them; and no replica makes up a secret the others must share."""
    import os

    shared = {"SECRET_KEY": "s-0123456789", "GATEWAY_TOKEN_ROOT": "g-0123456789"}
    for command, secret in (
        ("web", "HCLOUD_TOKEN"),
        ("proxy", "PULUMI_CONFIG_PASSPHRASE"),
        ("web", "CREDENTIALS_ROOT"),
        ("proxy", "GATEWAY_TOKEN_ROOT"),
    ):
        env = {"DATABASE_URL": database_url, "CLAWDET_DATA_DIR": str(tmp_path), "PATH": os.environ["PATH"]}
        env |= shared | {secret: "leak-me-0123456789"}
        done = subprocess.run(
            [sys.executable, "-m", "clawdet.cli", command, "--port", "1"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode != 0, (command, secret)
        assert f"{secret} is set, a secret this process must not hold" in done.stderr, done.stderr
        assert "worker.env" in done.stderr and "leak-me" not in done.stdout + done.stderr
    env = {"DATABASE_URL": database_url, "CLAWDET_DATA_DIR": str(tmp_path), "PATH": os.environ["PATH"]}
    made_up = subprocess.run(
        [sys.executable, "-m", "clawdet.cli", "web", "--port", "1"],
        env=env | {"SECRET_KEY": shared["SECRET_KEY"], "PUBLIC_URL": "https://clawdet.example"},
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made_up.returncode != 0 and "GATEWAY_TOKEN_ROOT is not set" in made_up.stderr, made_up.stderr


def test_operators_move_credentials_from_before_the_roots_onto_them(database_url, database, tmp_path, client):
    """Instances from before the credential roots keep SECRET_KEY-derived credentials until
    moved; after `move-credentials` rotating SECRET_KEY changes none of theirs."""
    from db.models import Instance, utcnow
    from tests.fixtures.database import register

    register(client, email="legacy-owner@example.com")
    instance_id = client.post("/api/instances", json={"subdomain": "olden"}).get_json()["instance"]["id"]
    with database.session() as session:
        row = session.get(Instance, instance_id)
        row.observed_generation, row.status, row.ready_at = row.generation, "ready", utcnow()
        row.llm_key_legacy = row.gateway_token_legacy = True  # what migration 0012 marks
        generation = row.generation
    keys_only = clawdet(["instance", "move-credentials"], database_url, tmp_path)
    assert keys_only.returncode == 0, keys_only.stderr
    with database.sessions() as session:
        row = session.get(Instance, instance_id)
        assert (row.llm_key_legacy, row.gateway_token_legacy, row.llm_key_version) == (False, True, 2)
        assert row.generation == generation + 1  # a worker pushes the new key in place
        row.observed_generation = row.generation
        session.commit()
    tokens = clawdet(["instance", "move-credentials", "--gateway-tokens"], database_url, tmp_path)
    assert tokens.returncode == 0, tokens.stderr
    with database.sessions() as session:
        row = session.get(Instance, instance_id)
        assert (row.gateway_token_legacy, row.gateway_token_version, row.llm_key_version) == (False, 2, 2)
