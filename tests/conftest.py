"""Shared fixtures: a migrated database on SQLite and on a real PostgreSQL server, the app, a
client that speaks CSRF."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from db.engine import Database
from db.migrate import upgrade
from db.settings import Settings, normalise_database_url

pytest_plugins = ["tests.integration.provisioning", "tests.sandbox_fixtures", "tests.integration.ops_helpers"]

TEMPLATE_DB = "clawdet_test_template"


def postgres_admin_url() -> str:
    url = os.environ.get("CLAWDET_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("CLAWDET_TEST_POSTGRES_URL is not set: run the suite with `make test`, which "
                    "starts PostgreSQL (or export the URL of a server you started yourself).")
    return url


def _admin_connection(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


@pytest.fixture(scope="session")
def postgres_template() -> str:
    """A migrated template database; each test copies it (fast) instead of migrating again."""
    admin = postgres_admin_url()
    with _admin_connection(admin) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    template_url = make_url(normalise_database_url(admin)).set(database=TEMPLATE_DB)
    upgrade(template_url.render_as_string(hide_password=False))
    return admin


def new_postgres_database(admin: str) -> tuple[str, callable]:
    name = f"t_{secrets.token_hex(6)}"
    with _admin_connection(admin) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")

    def drop() -> None:
        with _admin_connection(admin) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    url = make_url(normalise_database_url(admin)).set(database=name)
    return url.render_as_string(hide_password=False), drop


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'clawdet.db'}"
        upgrade(url)
        yield url
        return
    admin = request.getfixturevalue("postgres_template")
    url, drop = new_postgres_database(admin)
    yield url
    drop()


@pytest.fixture
def database(database_url: str) -> Database:
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings.from_env({
        "CLAWDET_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key-" + secrets.token_hex(8),
        "PUBLIC_URL": "http://127.0.0.1:8000",
    }, dotenv=False)


@pytest.fixture
def app(settings: Settings, database: Database):
    from webapp import create_app

    return create_app(settings, database, TESTING=False)


class JsonClient:
    """A Flask test client that fetches a CSRF token and sends it with every JSON write."""

    def __init__(self, client):
        self.client = client
        self.token: str | None = None

    def refresh_token(self) -> str:
        self.token = self.client.get("/api/auth/csrf").get_json()["csrfToken"]
        return self.token

    def _send(self, method: str, path: str, **kwargs):
        if self.token is None:
            self.refresh_token()
        headers = {"X-CSRFToken": self.token, **kwargs.pop("headers", {})}
        response = getattr(self.client, method)(path, headers=headers, **kwargs)
        body = response.get_json(silent=True) or {}
        if isinstance(body, dict) and "csrfToken" in body:
            self.token = body["csrfToken"]
        return response

    def post(self, path: str, **kwargs):
        return self._send("post", path, **kwargs)

    def delete(self, path: str, **kwargs):
        return self._send("delete", path, **kwargs)

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)


@pytest.fixture
def client(app):
    return JsonClient(app.test_client())


@pytest.fixture
def make_client(app):
    return lambda: JsonClient(app.test_client())


def register(client: JsonClient, email: str = "alice@example.com", password: str = "correct horse",
             name: str = "Alice", details: bool = True):
    response = client.post("/api/auth/register", json={"name": name, "email": email, "password": password})
    assert response.status_code == 201, response.get_json()
    if details:
        done = client.post("/api/auth/details", json={"email": email, "acceptTerms": True})
        assert done.status_code == 200, done.get_json()
    return response.get_json()["user"]
