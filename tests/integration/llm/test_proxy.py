"""The LLM proxy against the sandbox's OpenAI-compatible upstreams: keys, quotas, usage,
fallback, streaming through a real waitress process, and the platform key kept secret."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from sqlalchemy import select

from clawdet.instances import credentials
from clawdet.instances.lifecycle import DesiredState
from clawdet.llm import usage as llm_usage
from db.engine import Database
from db.models import Instance, LlmUsage, QuotaWarning, User
from tests.fixtures.database import register
from tests.fixtures.llm import (
    BACKUP,
    LiveServer,
    backup_key,
    customer_with_instance,
    instance_row,
    llm_env,
    llm_settings,
    start_llm_sandbox,
)

CHAT = "/llm/v1/chat/completions"


@pytest.fixture(scope="module")
def llm_sandbox(tmp_path_factory):
    box = start_llm_sandbox(tmp_path_factory.mktemp("llm-sandbox") / "state.json")
    yield box
    box.stop()


@pytest.fixture(autouse=True)
def clean_faults(llm_sandbox):
    llm_sandbox.faults.clear()
    llm_sandbox.llm.chunk_delay = 0.0
    yield
    llm_sandbox.faults.clear()


@pytest.fixture
def settings(tmp_path, database_url, llm_sandbox):
    return llm_settings(tmp_path, database_url, llm_sandbox)


@pytest.fixture
def customer(database, settings):
    return customer_with_instance(database, settings.secret_key)


def ask(client, key: str, text: str = "hello there proxy", **extra):
    body = {"model": "sandbox-small", "messages": [{"role": "user", "content": text}], **extra}
    return client.client.post(CHAT, json=body, headers={"Authorization": f"Bearer {key}"})


def settle(app) -> None:
    """Usage is written by a background thread; wait for it."""
    from webapp import usage_recorder as recorder

    recorder(app).flush()


def usage_rows(app, database) -> list[LlmUsage]:
    settle(app)
    with database.session() as s:
        return list(s.scalars(select(LlmUsage)))


def test_chat_completion_records_the_upstreams_usage(app, client, database, customer, llm_sandbox):
    user_id, instance_id, key = customer
    before = len(llm_sandbox.llm.completions())
    response = ask(client, key, "count these five words")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["choices"][0]["message"]["content"].startswith("Sandbox reply")
    upstream = llm_sandbox.llm.completions()[before]
    assert body["usage"]["prompt_tokens"] == upstream.prompt_tokens == 4
    [row] = usage_rows(app, database)
    assert (row.user_id, row.instance_id, row.model, row.day) == (
        user_id,
        instance_id,
        "sandbox-small",
        llm_usage.today(),
    )
    assert (row.prompt_tokens, row.completion_tokens, row.requests) == (
        upstream.prompt_tokens,
        upstream.completion_tokens,
        1,
    )
    ask(client, key, "again")
    [row] = usage_rows(app, database)
    assert row.requests == 2 and row.prompt_tokens == upstream.prompt_tokens + 1


def test_models_list(client, customer):
    response = client.client.get("/llm/v1/models", headers={"Authorization": f"Bearer {customer[2]}"})
    assert response.status_code == 200
    assert "sandbox-small" in [m["id"] for m in response.get_json()["data"]]


def test_unknown_and_missing_keys_are_refused(client, customer, settings):
    _, instance_id, _key = customer
    wrong_version = credentials.llm_key(settings.secret_key, instance_id, 99)
    for auth in (f"Bearer {wrong_version}", "Bearer clk_nope", "Bearer ", "Basic abc", None):
        headers = {"Authorization": auth} if auth else {}
        response = client.client.post(CHAT, json={"model": "m", "messages": []}, headers=headers)
        assert response.status_code == 401, auth
        error = response.get_json()["error"]
        assert error["code"] == "invalid_api_key" and error["message"] and error["action"]


def test_key_of_a_destroyed_instance_is_refused(client, database, customer):
    _, instance_id, key = customer
    assert ask(client, key).status_code == 200
    with database.session() as s:
        s.get(Instance, instance_id).desired_state = DesiredState.DESTROYED.value
    response = ask(client, key)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "invalid_api_key"


def test_quota_exceeded_and_warning_at_80_percent(app, client, database, customer):
    user_id, instance_id, key = customer
    with database.session() as s:
        llm_usage.record(
            s,
            user_id=user_id,
            instance_id=instance_id,
            model="sandbox-small",
            prompt_tokens=79_990,
            completion_tokens=0,
        )
    assert ask(client, key, "one two three four five six seven eight nine ten").status_code == 200
    settle(app)
    with database.session() as s:
        warning = s.scalar(select(QuotaWarning))
        assert warning.user_id == user_id and warning.percent == 80 and warning.quota == 100_000
        llm_usage.record(
            s,
            user_id=user_id,
            instance_id=instance_id,
            model="sandbox-small",
            prompt_tokens=20_000,
            completion_tokens=0,
        )
    response = ask(client, key)
    assert response.status_code == 429
    error = response.get_json()["error"]
    assert error["code"] == "quota_exceeded" and "100,000" in error["message"] and error["action"]
    with database.session() as s:
        assert len(list(s.scalars(select(QuotaWarning)))) == 1  # once per month


def test_fallback_when_primary_fails(client, database, customer, llm_sandbox):
    backup = llm_sandbox.llm_upstreams[BACKUP]
    before = len(backup.completions())
    for status in (503, 429):
        llm_sandbox.faults.add(service="llm", path="/v1/chat/completions", status=status, fail_next=1)
        response = ask(client, customer[2])
        assert response.status_code == 200, response.get_json()
    assert len(backup.completions()) == before + 2
    llm_sandbox.faults.add(service="llm", status=500, fail_next=1)
    llm_sandbox.faults.add(service=BACKUP, status=500, fail_next=1)
    response = ask(client, customer[2])
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "upstream_unavailable"


def test_rate_limit_per_key(tmp_path, database_url, database, llm_sandbox):
    from webapp import create_app

    settings = llm_settings(tmp_path, database_url, llm_sandbox, LLM_RATE_LIMIT="2 per minute")
    app = create_app(settings, database)
    _, _, key = customer_with_instance(database, settings.secret_key, "rl@example.com")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    statuses = [client.get("/llm/v1/models", headers=headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_rotation_from_the_dashboard(client, database, settings):
    register(client, email="rotor@example.com")
    instance_id = client.post("/api/instances", json={}).get_json()["instance"]["id"]
    before = instance_row(database, instance_id)
    old_key = credentials.llm_key(settings.secret_key, instance_id, before.llm_key_version)
    assert ask(client, old_key).status_code == 200
    page = client.post("/dashboard/instance/llm-key").get_data(as_text=True)
    after = instance_row(database, instance_id)
    new_key = credentials.llm_key(settings.secret_key, instance_id, after.llm_key_version)
    assert after.llm_key_version == before.llm_key_version + 1
    assert after.generation == before.generation + 1
    assert after.llm_key_hash == credentials.key_hash(new_key)
    assert f'id="new-llm-key">{new_key}<' in page
    assert new_key not in client.get("/dashboard").get_data(as_text=True)  # shown once
    assert ask(client, old_key).status_code == 401
    assert ask(client, new_key).status_code == 200


def test_dashboard_shows_usage_and_cost(client, database, settings):
    register(client, email="meter@example.com")
    instance_id = client.post("/api/instances", json={}).get_json()["instance"]["id"]
    with database.session() as s:
        user_id = s.scalar(select(User.id))
        llm_usage.record(
            s,
            user_id=user_id,
            instance_id=instance_id,
            model="gpt-4o-mini",
            prompt_tokens=1_000_000,
            completion_tokens=1_000_000,
        )
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'id="usage-tokens">2,000,000<' in page
    assert 'id="usage-cost">$0.7500<' in page  # 0.15 + 0.60 per million


def test_platform_key_never_leaves(client, database, customer, llm_sandbox, caplog):
    caplog.set_level("DEBUG")
    _, _, key = customer
    secrets = (llm_sandbox.llm_key, backup_key(llm_sandbox))
    llm_sandbox.faults.add(service="llm", status=500, fail_next=1)
    responses = [
        ask(client, key),
        ask(client, key, stream=True),
        ask(client, "clk_bad"),
        client.client.get("/llm/v1/models", headers={"Authorization": f"Bearer {key}"}),
    ]
    llm_sandbox.faults.add(service="llm", status=500, fail_next=1)
    llm_sandbox.faults.add(service=BACKUP, status=500, fail_next=1)
    responses.append(ask(client, key))
    register(client, email="pages@example.com")
    client.post("/api/instances", json={})
    responses += [
        client.get("/dashboard"),
        client.post("/dashboard/instance/llm-key"),
        client.get("/account"),
    ]
    for response in responses:
        seen = response.get_data(as_text=True) + str(response.headers)
        assert not any(secret in seen for secret in secrets)
    assert caplog.text and not any(secret in caplog.text for secret in secrets)


@pytest.fixture
def live(tmp_path, llm_sandbox):
    server = LiveServer(tmp_path, llm_env(llm_sandbox)).start()
    yield server
    server.stop()


def test_streams_pass_through_chunk_by_chunk(live, llm_sandbox):
    database = Database(live.database_url)
    try:
        _user_id, instance_id, key = customer_with_instance(database, "live-secret")
        llm_sandbox.llm.chunk_delay = 0.25
        text = "please stream this slowly"
        started = time.monotonic()
        arrivals, chunks = [], []
        with httpx.stream(
            "POST",
            live.base + CHAT,
            timeout=30,
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "sandbox-small", "stream": True, "messages": [{"role": "user", "content": text}]},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    arrivals.append(time.monotonic() - started)
                    chunks.append(json.loads(line[6:]))
        total = time.monotonic() - started
        completion_tokens = chunks[-1]["usage"]["completion_tokens"]  # one chunk per word, 0.25 s apart
        assert completion_tokens >= 8 and total >= 0.25 * completion_tokens * 0.9
        first_word = next(
            i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["delta"].get("content")
        )
        assert arrivals[first_word] < 0.8 < total - 1.0  # it arrived while the upstream was still writing
        usage = chunks[-1]["usage"]
        record = llm_sandbox.llm.completions()[-1]
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
            record.prompt_tokens,
            record.completion_tokens,
        )
        deadline = time.monotonic() + 10
        while True:  # written by the server's background recorder just after the stream
            with database.session() as s:
                row = s.scalar(select(LlmUsage).where(LlmUsage.instance_id == instance_id))
            if row is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert row is not None
        assert (row.prompt_tokens, row.completion_tokens) == (record.prompt_tokens, record.completion_tokens)
        assert llm_sandbox.llm_key not in live.log()
    finally:
        database.dispose()
