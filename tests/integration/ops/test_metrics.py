"""`/metrics` parses as Prometheus text, counts HTTP requests and shows what workers recorded
in the database."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from clawdet.instances import leases
from clawdet.ops import metrics as ops_metrics
from db.models import Instance, utcnow
from tests.fixtures.database import register


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {family.name: family.samples for family in text_string_to_metric_families(response.data.decode())}


def value(samples, name, **labels) -> float:
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_parse_and_move(client, database):
    before = scrape(client)
    register(client, email="metric@example.com")
    client.post("/api/instances", json={"subdomain": "metric"})
    with database.session() as session:
        ops_metrics.increment(session, "clawdet_reconcile_total", {"kind": "create", "outcome": "success"})
        ops_metrics.observe(session, "clawdet_reconcile_duration_seconds", 42.0, {"kind": "create"})
        ops_metrics.increment(session, "clawdet_drift_found_total", {"action": "repair"})
    after = scrape(client)

    http = "clawdet_http_requests"
    assert (
        value(after[http], "clawdet_http_requests_total", route="/api/auth/register", status="201")
        == value(
            before.get(http, []), "clawdet_http_requests_total", route="/api/auth/register", status="201"
        )
        + 1
    )
    assert value(after["clawdet_instances"], "clawdet_instances", status="pending") == 1
    assert value(after["clawdet_work_queue"], "clawdet_work_queue", state="pending") == 1
    assert value(after["clawdet_reconcile"], "clawdet_reconcile_total", kind="create", outcome="success") == 1
    duration = after["clawdet_reconcile_duration_seconds"]
    assert value(duration, "clawdet_reconcile_duration_seconds_bucket", le="30.0") == 0
    assert value(duration, "clawdet_reconcile_duration_seconds_bucket", le="60.0") == 1
    assert value(duration, "clawdet_reconcile_duration_seconds_count") == 1
    assert value(duration, "clawdet_reconcile_duration_seconds_sum") == 42.0
    assert value(after["clawdet_drift_found"], "clawdet_drift_found_total", action="repair") == 1


def test_lease_takeovers_and_the_age_of_the_last_fleet_scan_show(client, database):
    register(client, email="taken@example.com")
    client.post("/api/instances", json={"subdomain": "taken"})
    with database.session() as session:  # a worker died holding it an hour ago
        session.execute(
            update(Instance).values(lease_owner="dead:1:a", lease_expires_at=utcnow() - timedelta(hours=1))
        )
    with database.sessions() as session:
        assert leases.claim_next(session, "live:2:b", timedelta(minutes=5)).taken_over_from == "dead:1:a"
        assert leases.claim_next(session, "live:3:c", timedelta(minutes=5)) is None
    ops_metrics.observe_scan(database, SimpleNamespace(findings=[]))
    with database.session() as session:  # a host whose clock is behind does not move it back
        ops_metrics.mark_time(session, "clawdet_fleet_scan_finished_timestamp_seconds", time.time() - 3600)
    after = scrape(client)

    assert value(after["clawdet_lease_takeovers"], "clawdet_lease_takeovers_total") == 1
    finished = "clawdet_fleet_scan_finished_timestamp_seconds"
    assert 0 <= time.time() - value(after[finished], f"{finished}_total") < 60


def test_metrics_token_guards_the_endpoint(settings, database):
    from webapp import create_app

    client = create_app(
        dataclasses.replace(settings, metrics_token="scrape-me-please"), database
    ).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"}).status_code == 200


def test_without_a_token_only_this_machine_may_scrape(client):
    """Hardening: /metrics without METRICS_TOKEN answers loopback peers only, never a request a
    proxy forwarded (whose peer is loopback too)."""
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    remote = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert remote.status_code == 401 and b"METRICS_TOKEN" in remote.data
    forwarded = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 401
