"""`/api/health` checks the database, the Pulumi state backend and both cloud APIs and names
what is down."""

from __future__ import annotations

import dataclasses

import pytest

from clawdet.settings import Settings
from webapp import create_app


@pytest.fixture
def cloud_settings(settings: Settings, sandbox) -> Settings:
    description = sandbox.describe()
    return dataclasses.replace(
        settings,
        base_domain=description["zone_name"],
        cloud_env={
            "HCLOUD_TOKEN": description["hcloud_token"],
            "HCLOUD_ENDPOINT": description["hcloud_url"],
            "CLOUDFLARE_API_TOKEN": description["cloudflare_token"],
            "CLOUDFLARE_BASE_URL": description["cloudflare_url"],
            "CLOUDFLARE_ZONE_ID": description["zone_id"],
        },
    )


def test_all_up(cloud_settings, database):
    response = create_app(cloud_settings, database).test_client().get("/api/health")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["down"] == [] and set(body["checks"]) == {"database", "pulumi_state", "hetzner", "cloudflare"}


def test_names_the_cloud_that_is_down(cloud_settings, database, sandbox):
    bad = dict(cloud_settings.cloud_env, CLOUDFLARE_API_TOKEN="wrong-token")
    client = create_app(dataclasses.replace(cloud_settings, cloud_env=bad), database).test_client()
    body = client.get("/api/health").get_json()
    assert body["down"] == ["cloudflare"] and "answered 40" in body["checks"]["cloudflare"]["error"]
    assert body["checks"]["cloudflare"]["action"]
    sandbox.stop()
    client = create_app(cloud_settings, database).test_client()
    response = client.get("/api/health")
    assert response.status_code == 503 and response.get_json()["down"] == ["hetzner", "cloudflare"]


def test_names_the_state_backend_and_the_database(cloud_settings, database, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    settings = dataclasses.replace(cloud_settings, pulumi_backend_url=f"file://{blocked}/state")
    app = create_app(settings, database)
    body = app.test_client().get("/api/health").get_json()
    assert body["down"] == ["pulumi_state"]
    database.dispose()
    app.extensions["clawdet.platform_health"].cache_seconds = 0
    app.extensions["clawdet.db"].engine.dispose()
    broken = create_app(
        dataclasses.replace(settings, pulumi_backend_url=cloud_settings.pulumi_backend_url),
        type(database)("postgresql+psycopg://nobody@127.0.0.1:1/none"),
    )
    body = broken.test_client().get("/api/health").get_json()
    assert body["down"] == ["database"]


def test_details_are_for_operators_and_load_balancers_get_up_or_down(cloud_settings, database):
    """Hardening (issue 16, item 5): what is down and why is configuration; anonymous remote
    callers get only the status."""
    with_token = dataclasses.replace(cloud_settings, metrics_token="ops-token-0123456789")
    client = create_app(with_token, database).test_client()
    remote = {"REMOTE_ADDR": "203.0.113.50"}
    anonymous = client.get("/api/health", environ_base=remote)
    assert anonymous.status_code == 200 and anonymous.get_json() == {"status": "ok"}
    operator = client.get(
        "/api/health", environ_base=remote, headers={"Authorization": "Bearer ops-token-0123456789"}
    )
    assert set(operator.get_json()["checks"]) == {"database", "pulumi_state", "hetzner", "cloudflare"}
    assert "checks" not in client.get("/api/health").get_json()  # a token is set: loopback needs it too


def test_a_stampede_calls_each_cloud_once(cloud_settings, database, sandbox):
    """Concurrent requests when the cache runs out share one check of each cloud API."""
    from concurrent.futures import ThreadPoolExecutor

    app = create_app(cloud_settings, database)
    sandbox.journal.clear()
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: app.test_client().get("/api/health").status_code, range(32)))
    assert statuses == [200] * 32
    hetzner_calls = [e for e in sandbox.journal.entries("hetzner") if e.path.endswith("/locations")]
    cloudflare_calls = [e for e in sandbox.journal.entries("cloudflare") if "/zones/" in e.path]
    assert len(hetzner_calls) == 1 and len(cloudflare_calls) == 1
