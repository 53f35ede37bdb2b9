"""`/api/health`: the web app checks the database and shows what the workers last found of the
Pulumi state backend and both cloud APIs, naming what is down. The web tier holds no cloud
token (hardening, issue 16 item 9), so the workers check the clouds, once a minute for the fleet.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from clawdet.instances import leases
from clawdet.ops import platform_health
from clawdet.settings import Settings
from db.models import PlatformCheck
from webapp import create_app

ALL = {"database", "pulumi_state", "hetzner", "cloudflare"}


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


def web_settings(settings: Settings) -> Settings:
    """The web tier's view: no cloud token, no state backend of its own."""
    return dataclasses.replace(settings, cloud_env={}, pulumi_backend_url="file:///nonexistent/web/has/none")


def health(settings: Settings, database, **environ):
    response = create_app(web_settings(settings), database).test_client().get("/api/health", **environ)
    return response.status_code, response.get_json()


def test_all_up_as_a_worker_found_it(cloud_settings, database, sandbox):
    sandbox.journal.clear()
    assert all(check.ok for check in platform_health.report(cloud_settings, database).values())
    status, body = health(cloud_settings, database)
    assert status == 200 and body["down"] == [] and set(body["checks"]) == ALL, body
    reached = sandbox.journal.entries("hetzner") + sandbox.journal.entries("cloudflare")
    assert len(reached) == 2  # the worker's two calls; the web app called no cloud


def test_names_the_cloud_that_is_down(cloud_settings, database, sandbox):
    bad = dataclasses.replace(
        cloud_settings, cloud_env=dict(cloud_settings.cloud_env, CLOUDFLARE_API_TOKEN="x")
    )
    platform_health.report(bad, database)
    status, body = health(cloud_settings, database)
    assert (status, body["status"]) == (200, "degraded")  # the web tier serves: never pulled for it
    assert body["down"] == ["cloudflare"] and "answered 40" in body["checks"]["cloudflare"]["error"]
    assert body["checks"]["cloudflare"]["action"]
    sandbox.stop()
    platform_health.report(cloud_settings, database)
    assert health(cloud_settings, database)[1]["down"] == ["hetzner", "cloudflare"]


def test_names_the_state_backend_and_the_database(cloud_settings, database, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    platform_health.report(
        dataclasses.replace(cloud_settings, pulumi_backend_url=f"file://{blocked}/state"), database
    )
    assert health(cloud_settings, database)[1]["down"] == ["pulumi_state"]
    broken = create_app(
        web_settings(cloud_settings), type(database)("postgresql+psycopg://nobody@127.0.0.1:1/none")
    )
    response = broken.test_client().get("/api/health")
    body = response.get_json()
    assert (response.status_code, body["status"]) == (503, "down")
    assert body["down"] == ["database"] and "nobody" not in str(body)


def test_without_a_worker_the_web_app_says_so(cloud_settings, database):
    """No worker has checked lately (none runs, or all are stuck): down, and which step helps."""
    status, body = health(cloud_settings, database)
    assert (status, body["status"]) == (200, "degraded")
    assert body["down"] == ["pulumi_state", "hetzner", "cloudflare"]
    assert "no worker has checked hetzner" in body["checks"]["hetzner"]["error"]
    assert "clawdet worker" in body["checks"]["hetzner"]["action"]
    platform_health.report(cloud_settings, database)
    assert health(cloud_settings, database)[1]["status"] == "ok"
    with database.session() as session:
        for row in session.query(PlatformCheck):
            row.checked_at -= platform_health.STALE_AFTER + timedelta(seconds=1)
    assert health(cloud_settings, database)[1]["down"] == ["pulumi_state", "hetzner", "cloudflare"]


def test_details_are_for_operators_and_load_balancers_get_up_or_down(cloud_settings, database):
    """Hardening (issue 16, item 5): what is down and why is configuration; anonymous remote
    callers get only the status."""
    platform_health.report(cloud_settings, database)
    with_token = dataclasses.replace(web_settings(cloud_settings), metrics_token="ops-token-0123456789")
    client = create_app(with_token, database).test_client()
    remote = {"REMOTE_ADDR": "203.0.113.50"}
    anonymous = client.get("/api/health", environ_base=remote)
    assert anonymous.status_code == 200 and anonymous.get_json() == {"status": "ok"}
    operator = client.get(
        "/api/health", environ_base=remote, headers={"Authorization": "Bearer ops-token-0123456789"}
    )
    assert set(operator.get_json()["checks"]) == ALL
    assert "checks" not in client.get("/api/health").get_json()  # a token is set: loopback needs it too


def test_the_fleet_checks_the_clouds_once_a_period_and_a_stampede_reads_once(
    cloud_settings, database, sandbox
):
    """However many workers and web requests: one check of each cloud API per period."""
    every = timedelta(seconds=platform_health.REPORT_SECONDS * 0.9)
    sandbox.journal.clear()

    def worker(n: int) -> None:
        with database.sessions() as session:
            if leases.claim_period(session, "platform-checks", f"worker-{n}", every):
                platform_health.report(cloud_settings, database)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    app = create_app(web_settings(cloud_settings), database)
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: app.test_client().get("/api/health").status_code, range(32)))
    assert statuses == [200] * 32
    hetzner_calls = [e for e in sandbox.journal.entries("hetzner") if e.path.endswith("/locations")]
    cloudflare_calls = [e for e in sandbox.journal.entries("cloudflare") if "/zones/" in e.path]
    assert len(hetzner_calls) == 1 and len(cloudflare_calls) == 1
