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
