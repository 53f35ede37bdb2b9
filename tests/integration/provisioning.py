"""Fixtures for the provisioning tests: the sandbox cloud, a copy of the Pulumi project with
its own stacks/ folder, a file:// state backend and a PostgreSQL database."""
from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from db.engine import Database
from db.migrate import upgrade
from db.models import Instance, User, utcnow
from db.settings import Settings
from provisioner import toolchain
from provisioner.instances import request_instance
from provisioner.reconciler import Reconciler, ReconcilerConfig

REPO = Path(__file__).resolve().parents[2]
FAST = ReconcilerConfig(lease=timedelta(seconds=20), max_attempts=4, backoff_base=0.2, backoff_cap=1.0,
                        ready_deadline=30)


def require_toolchain():
    tools = toolchain.find()
    if tools is None:
        pytest.fail("The Pulumi toolchain is missing: run `make toolchain` (make test does it first).")
    missing = tools.missing_plugins
    if missing:
        pytest.fail(f"Pulumi provider plugins missing: {missing}; run `make toolchain`.")
    return tools


def project_copy(target: Path) -> Path:
    """The real program, with a stacks/ folder of the test's own."""
    target.mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", target / "Pulumi.yaml")
    for name in ("programs", "cloud-init", ".venv"):
        (target / name).symlink_to(REPO / name)
    (target / "stacks").mkdir()
    return target


@pytest.fixture
def cloud_sandbox(tmp_path):
    from sandbox import Sandbox

    with Sandbox(tmp_path / "sandbox" / "state.json", boot_delay=0.3, action_delay=0.05) as box:
        yield box


@pytest.fixture
def pg_url(postgres_template):
    from tests.conftest import new_postgres_database

    url, drop = new_postgres_database(postgres_template)
    yield url
    drop()


@pytest.fixture
def prov_settings(prov_env) -> Settings:
    return Settings.from_env(prov_env, dotenv=False)


def sandbox_env(box, tmp: Path, database_url: str) -> dict[str, str]:
    """Settings for a control plane on `box`: its own data dir, state backend and project copy."""
    description = box.describe()
    return {
        "CLAWDET_DATA_DIR": str(tmp / "data"),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-" + secrets.token_hex(8),
        "PULUMI_CONFIG_PASSPHRASE": "test-passphrase",
        "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}",
        "CLAWDET_PROJECT_DIR": str(project_copy(tmp / "project")),
        "BASE_DOMAIN": description["zone_name"],
        **box.provider_env(),
        "CLOUDFLARE_ZONE_ID": description["zone_id"],
        "HEALTH_URL_TEMPLATE": f"http://{{ipv4}}:{description['gateway_port']}/healthz",
    }


@contextmanager
def zero_delay_control_plane() -> Iterator[tuple[object, Database, Settings]]:
    """For benchmarks: a sandbox with no boot, action or API delay, SQLite and settings."""
    from sandbox import Sandbox

    with tempfile.TemporaryDirectory() as tmp_name, \
            Sandbox(Path(tmp_name) / "sandbox" / "state.json", boot_delay=0, action_delay=0) as box:
        tmp = Path(tmp_name)
        url = f"sqlite:///{tmp / 'bench.db'}"
        upgrade(url)
        database = Database(url)
        try:
            yield box, database, Settings.from_env(sandbox_env(box, tmp, url), dotenv=False)
        finally:
            database.dispose()


@pytest.fixture
def prov_env(tmp_path, cloud_sandbox, pg_url) -> dict[str, str]:
    require_toolchain()
    return sandbox_env(cloud_sandbox, tmp_path, pg_url)


@pytest.fixture
def prov_db(prov_settings) -> Database:
    database = Database(prov_settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def reconciler(prov_settings, prov_db) -> Reconciler:
    return Reconciler(prov_settings, prov_db, config=FAST)


def new_instance(database: Database, settings: Settings, subdomain: str, tier: str = "free") -> str:
    with database.session() as session:
        user = User(email=f"{subdomain}@example.com", name=subdomain, terms_accepted_at=utcnow())
        user.mark_free_beta()
        session.add(user)
        session.flush()
        return request_instance(session, user, secret=settings.secret_key, subdomain=subdomain, tier=tier).id


def instance(database: Database, instance_id: str) -> Instance:
    with database.sessions() as session:
        row = session.get(Instance, instance_id)
        session.expunge(row)
        return row


def servers_named(box, name: str) -> list[dict]:
    return [s for s in box.inventory()["servers"] if s["labels"].get("clawdet-instance") == name]


def records_named(box, fqdn: str) -> list[dict]:
    return [r for r in box.inventory()["dns_records"] if r["name"] == fqdn]
