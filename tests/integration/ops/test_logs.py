"""A web flow with known secrets leaves none of them in the logs; request ids go in, come back
out and are remembered for the worker's operation."""

from __future__ import annotations

import io
import json
import logging

import pytest

from clawdet import logs
from clawdet.instances import credentials
from clawdet.ops.observed import request_id_for
from db.models import Instance, OperationRequest


@pytest.fixture
def log_stream(settings):
    stream = io.StringIO()
    logs.configure(settings, stream=stream, level="DEBUG", fmt="json")
    yield stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "clawdet"]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def test_request_id_round_trip_and_no_secret_in_logs(client, database, settings, log_stream):
    password = "Tr0ub4dor&3-very-secret"
    response = client.post(
        "/api/auth/register",
        json={"name": "Sec", "email": "sec@example.com", "password": password},
        headers={"X-Request-ID": "req-register-1"},
    )
    assert response.status_code == 201 and response.headers["X-Request-ID"] == "req-register-1"
    client.post("/api/auth/details", json={"email": "sec@example.com", "acceptTerms": True})
    assert (
        client.post(
            "/api/auth/login", json={"email": "sec@example.com", "password": password + "x"}
        ).status_code
        == 401
    )
    assert (
        client.post("/api/auth/login", json={"email": "sec@example.com", "password": password}).status_code
        == 200
    )
    created = client.post(
        "/api/instances", json={"subdomain": "secret"}, headers={"X-Request-ID": "req-create-7"}
    )
    assert created.status_code == 202
    instance_id = created.get_json()["instance"]["id"]
    with database.sessions() as session:
        assert session.get(OperationRequest, instance_id).request_id == "req-create-7"
    assert request_id_for(database, instance_id) == ("req-create-7", "secret")
    # Rotating the key is a new operation (a new generation) with its own request id.
    rotated = client.client.post(
        "/dashboard/instance/llm-key",
        data={"csrf_token": client.token},
        headers={"X-Request-ID": "req-rotate-2"},
        follow_redirects=True,
    )
    assert rotated.status_code == 200
    assert request_id_for(database, instance_id) == ("req-rotate-2", "secret")
    generated = client.get("/api/auth/me").headers["X-Request-ID"]
    assert len(generated) == 16

    roots = credentials.Roots.of(settings)
    with database.sessions() as session:
        row = session.get(Instance, instance_id)
        assert row.llm_key_version == 2
        llm_key_v2, token = credentials.llm_key(roots, row), credentials.gateway_token(roots, row)
    assert b"llm-key-rotated" in rotated.data and llm_key_v2.encode() not in rotated.data
    text = log_stream.getvalue()
    for secret in (password, settings.secret_key, settings.credentials_root, llm_key_v2, token, client.token):
        assert secret not in text
    entries = [json.loads(line) for line in text.splitlines()]
    assert any(
        e.get("request_id") == "req-create-7" and "POST /api/instances 202" in e["event"] for e in entries
    )


def test_an_operation_logs_with_its_request_id_and_counts_its_outcome(client, database, settings, log_stream):
    from clawdet.ops import metrics as ops_metrics
    from clawdet.ops.observed import operation
    from tests.fixtures.database import register

    register(client, email="op@example.com")
    instance_id = client.post(
        "/api/instances", json={"subdomain": "opx"}, headers={"X-Request-ID": "req-op-1"}
    ).get_json()["instance"]["id"]
    log = logging.getLogger("clawdet.reconciler.reconciler")
    with operation(database, instance_id) as request_id:
        assert request_id == "req-op-1"
        log.info("converging %s", "opx")
        with database.session() as session:
            session.get(Instance, instance_id).attempts += 1  # what a failed attempt leaves
    log.info("between operations")
    entries = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    [inside] = [e for e in entries if e["event"] == "converging opx"]
    assert inside["request_id"] == "req-op-1" and inside["instance"] == "opx"
    [outside] = [e for e in entries if e["event"] == "between operations"]
    assert "request_id" not in outside
    with database.sessions() as session:
        counters = {(c.name, c.labels): c.value for c in ops_metrics.all_counters(session)}
    assert counters[("clawdet_reconcile_total", "kind=create,outcome=retry")] == 1
    assert counters[("clawdet_reconcile_duration_seconds_count", "kind=create")] == 1


def test_several_apps_on_one_database_remember_a_request_once(settings, database):
    from tests.fixtures.database import JsonClient, register
    from webapp import create_app

    create_app(settings, database)
    client = JsonClient(create_app(settings, database).test_client())
    register(client, email="twice@example.com")
    created = client.post(
        "/api/instances", json={"subdomain": "twice"}, headers={"X-Request-ID": "req-twice"}
    )
    assert created.status_code == 202
    assert request_id_for(database, created.get_json()["instance"]["id"]) == ("req-twice", "twice")


def test_work_nobody_asked_for_gets_its_own_operation_id(client, database):
    from clawdet.ops.observed import operation
    from tests.fixtures.database import register

    register(client, email="drift@example.com")
    instance_id = client.post(
        "/api/instances", json={"subdomain": "drifter"}, headers={"X-Request-ID": "req-create-9"}
    ).get_json()["instance"]["id"]
    with operation(database, instance_id) as first, database.session() as session:  # it converges
        row = session.get(Instance, instance_id)
        row.observed_generation, row.status = row.generation, "ready"
    with database.session() as session:  # later the fleet scan asks for a repair
        session.get(Instance, instance_id).requested_action = "repair"
    with operation(database, instance_id) as second:
        pass
    assert first == "req-create-9" and second.startswith("op-")
