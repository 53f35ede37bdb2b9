"""The LLM proxy against the sandbox's OpenAI-compatible upstreams, served by the stream server
(uvicorn) as `clawdet web` serves it: keys, quotas and reservations, usage, fallback, the cap on
open requests, client disconnects, the official openai SDK as a client, the platform key kept
secret, and streaming through a real `clawdet web` process."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import httpx
import openai
import pytest
from sqlalchemy import select

from clawdet.instances import credentials
from clawdet.instances.lifecycle import DesiredState
from clawdet.llm import usage as llm_usage
from clawdet.llm.admission import prompt_ceiling
from db.engine import Database
from db.models import Instance, LlmLease, LlmUsage, QuotaWarning, User
from tests.fixtures.browser import free_port
from tests.fixtures.database import register
from tests.fixtures.llm import (
    BACKUP,
    LiveServer,
    backup_key,
    customer_with_instance,
    instance_row,
    issue_key,
    llm_env,
    llm_settings,
    proxy_client,
    recorder,
)

CHAT = "/llm/v1/chat/completions"


@pytest.fixture(autouse=True)
def clean_faults(llm_sandbox):
    llm_sandbox.faults.clear()
    llm_sandbox.llm.chunk_delay = 0.0
    yield
    llm_sandbox.faults.clear()
    llm_sandbox.llm.chunk_delay = 0.0


@pytest.fixture
def settings(tmp_path, database_url, llm_sandbox):
    return llm_settings(tmp_path, database_url, llm_sandbox)


@pytest.fixture
def proxy(settings, database):
    with proxy_client(settings, database) as client:
        yield client


@pytest.fixture
def customer(database, settings):
    return customer_with_instance(database, settings.secret_key)


def ask(http: httpx.Client, key: str, text: str = "hello there proxy", **extra) -> httpx.Response:
    body = {"model": "sandbox-small", "messages": [{"role": "user", "content": text}], **extra}
    return http.post(CHAT, json=body, headers={"Authorization": f"Bearer {key}"})


def sdk(proxy: httpx.Client, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=str(proxy.base_url.join("/llm/v1")), max_retries=0, timeout=30)


def usage_rows(proxy, database, timeout: float = 10) -> list[LlmUsage]:
    """The usage rows once the server recorded the last request (it does so just after the
    client has read the end of an answer)."""
    deadline = time.monotonic() + timeout
    while True:
        assert recorder(proxy).flush(), "usage rows were not written within 10 s"
        with database.session() as s:
            rows = list(s.scalars(select(LlmUsage)))
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def refused_soon(proxy, key: str) -> httpx.Response:
    """Keys are looked up again at most every second (clawdet/llm/ledger.py)."""
    deadline = time.monotonic() + 3
    while (response := ask(proxy, key)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    return response


def assert_settled(proxy, database) -> None:
    """No request holds tokens any more, and the leases in the database are what the process
    believes it holds (what was spent moved to the usage rows)."""
    assert recorder(proxy).flush()
    ledger = proxy.app.state.services.ledger
    assert not ledger.open and all(lease.reserved == 0 for lease in ledger.leases.values())
    mine = {lease.id: (lease.granted, lease.spent) for lease in ledger.leases.values() if lease.id}
    with database.session() as s:
        rows = s.execute(select(LlmLease.id, LlmLease.granted, LlmLease.spent).where(LlmLease.id.in_(mine)))
        assert {lease_id: (granted, spent) for lease_id, granted, spent in rows} == mine


def test_chat_completion_records_the_upstreams_usage(proxy, database, customer, llm_sandbox):
    user_id, instance_id, key = customer
    before = len(llm_sandbox.llm.completions())
    answer = sdk(proxy, key).chat.completions.create(
        model="sandbox-small", messages=[{"role": "user", "content": "count these five words"}]
    )
    assert answer.choices[0].message.content.startswith("Sandbox reply")
    upstream = llm_sandbox.llm.completions()[before]
    assert answer.usage.prompt_tokens == upstream.prompt_tokens == 4
    [row] = usage_rows(proxy, database)
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
    assert ask(proxy, key, "again").status_code == 200
    [row] = usage_rows(proxy, database)
    assert row.requests == 2 and row.prompt_tokens == upstream.prompt_tokens + 1
    assert_settled(proxy, database)


def test_the_openai_sdk_streams_lists_models_and_is_refused_a_bad_key(proxy, database, customer):
    _, _, key = customer
    client = sdk(proxy, key)
    assert "sandbox-small" in [model.id for model in client.models.list()]
    chunks = list(
        client.chat.completions.create(
            model="sandbox-small", messages=[{"role": "user", "content": "stream four words"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Sandbox reply") and chunks[-1].usage.completion_tokens == len(text.split())
    [row] = usage_rows(proxy, database)
    assert row.completion_tokens == chunks[-1].usage.completion_tokens
    with pytest.raises(openai.AuthenticationError) as refused:
        sdk(proxy, "clk_wrong").chat.completions.create(model="sandbox-small", messages=[])
    assert refused.value.status_code == 401 and refused.value.body["code"] == "invalid_api_key"


def test_unknown_and_missing_keys_are_refused(proxy, customer, settings, database):
    _, instance_id, _key = customer
    with database.session() as s:
        row = s.get(Instance, instance_id)
        row.llm_key_version = 99
        wrong_version = credentials.llm_key(credentials.Roots.of(settings), row)
        s.rollback()
    for auth in (f"Bearer {wrong_version}", "Bearer clk_nope", "Bearer", "Basic abc", None):
        headers = {"Authorization": auth} if auth else {}
        response = proxy.post(CHAT, json={"model": "m", "messages": []}, headers=headers)
        assert response.status_code == 401, auth
        error = response.json()["error"]
        assert error["code"] == "invalid_api_key" and error["message"] and error["action"]


def test_the_chat_path_answers_other_methods_and_surprises_in_the_proxys_words(proxy, customer, monkeypatch):
    """POST on the chat path is served ahead of the router (streams.StreamServer): other methods
    still go through the router (to the web app, here: a 404), and an error of our own is a 500
    without a stack trace."""
    response = proxy.get(CHAT, headers={"Authorization": f"Bearer {customer[2]}"})
    assert response.status_code in (404, 405)

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr("streams.llm_proxy.admissions.set_max_tokens", broken)
    response = ask(proxy, customer[2])
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert "a bug of ours" not in response.text


def test_the_proxy_settles_its_heap_and_gives_the_gc_back_and_the_web_app_leaves_it(settings, database):
    import gc

    from starlette.testclient import TestClient

    from streams import GC_THRESHOLDS, create_app

    before = gc.get_threshold()
    with TestClient(create_app(settings, database, settle_heap_at_start=True)):  # `clawdet proxy`
        assert gc.get_threshold() == GC_THRESHOLDS and gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    with TestClient(create_app(settings, database)):  # `clawdet web`: Flask and workers share it
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0


BAD_BODIES = [
    ({"stream_options": [1]}, "stream_options"),
    ({"messages": "hi"}, "messages"),
    ({"max_tokens": -5}, None),
]


@pytest.mark.parametrize(("extra", "field"), BAD_BODIES)
def test_bad_bodies_are_a_400_naming_the_field(proxy, customer, database, extra, field):
    headers = {"Authorization": f"Bearer {customer[2]}"}
    body = {"model": "sandbox-small", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = proxy.post(CHAT, json={**body, **extra}, headers=headers)
    error = response.json()["error"]
    assert response.status_code == 400 and error.get("field") == field
    assert error["message"] and error["action"]
    too_big = proxy.post(CHAT, content=b"x" * (1024 * 1024 + 1), headers=headers)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "too_large"
    assert_settled(proxy, database)


def test_key_of_a_destroyed_instance_is_refused(proxy, database, customer):
    _, instance_id, key = customer
    assert ask(proxy, key).status_code == 200
    with database.session() as s:
        s.get(Instance, instance_id).desired_state = DesiredState.DESTROYED.value
    time.sleep(1.1)  # a second after its last lookup, not a single request more goes through
    response = ask(proxy, key)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def record_usage(database, customer, tokens: int) -> None:
    user_id, instance_id, _ = customer
    with database.session() as s:
        llm_usage.record(
            s,
            user_id=user_id,
            instance_id=instance_id,
            model="sandbox-small",
            prompt_tokens=tokens,
            completion_tokens=0,
        )


def test_a_warning_at_80_percent_of_the_quota(proxy, database, customer):
    user_id, _, key = customer
    record_usage(database, customer, 79_990)
    assert ask(proxy, key, "one two three four five six seven eight nine ten").status_code == 200
    assert recorder(proxy).flush()
    with database.session() as s:
        warning = s.scalar(select(QuotaWarning))
        assert warning.user_id == user_id and warning.percent == 80 and warning.quota == 100_000
    assert ask(proxy, key).status_code == 200
    assert recorder(proxy).flush()
    with database.session() as s:
        assert len(list(s.scalars(select(QuotaWarning)))) == 1  # once per month


def test_a_used_up_quota_is_a_429(proxy, database, customer):
    record_usage(database, customer, 100_000)
    response = ask(proxy, customer[2])
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded" and "100,000" in error["message"] and error["action"]


def test_near_the_end_of_the_quota_an_answer_is_shortened_then_refused(
    proxy, database, customer, llm_sandbox
):
    """With 300 answer tokens left the request (4,096 by default) is told max_tokens=300 and
    answered; with fewer than 256 left it is refused rather than cut to nothing."""
    text = " ".join(["word"] * 40)  # the sandbox answers with 44 words
    ceiling = prompt_ceiling({"messages": [{"role": "user", "content": text}]})
    record_usage(database, customer, 100_000 - ceiling - 300)
    response = ask(proxy, customer[2], text)
    assert response.status_code == 200 and llm_sandbox.llm.completions()[-1].completion_tokens == 44
    recorder(proxy).flush()
    refused = ask(proxy, customer[2], text)  # 300 - 84 spent: 216 answer tokens are left
    assert refused.status_code == 429 and "too few for this prompt" in refused.json()["error"]["message"]
    with database.session() as s:
        assert llm_usage.month_tokens(s, customer[0]) <= 100_000


def test_parallel_requests_never_spend_past_a_nearly_full_quota(
    proxy, settings, database, customer, llm_sandbox
):
    """Twenty requests at once through two proxy processes sharing the database, each able to
    use 70 tokens, against 1,000 left: without reservations they would spend 1,400."""
    user_id, _, key = customer
    record_usage(database, customer, 100_000 - 1_000)
    llm_sandbox.llm.chunk_delay = 0.02
    text = " ".join(["word"] * 40)  # a reply of 44 words, cut to max_tokens
    other_settings = dataclasses.replace(settings, public_url=f"http://127.0.0.1:{free_port()}")
    with proxy_client(other_settings, database) as other:

        def one(base_url, results: list) -> None:
            with httpx.Client(base_url=base_url, timeout=30) as http:
                results.append(ask(http, key, text, max_tokens=30, stream=True).status_code)

        results: list[int] = []
        threads = [
            threading.Thread(target=one, args=((proxy, other)[i % 2].base_url, results)) for i in range(20)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(results) == {200, 429} and results.count(200) >= 2
        assert_settled(other, database)
    assert_settled(proxy, database)
    with database.session() as s:
        assert llm_usage.month_tokens(s, user_id) <= 100_000


def test_the_cap_on_open_requests_answers_429_with_retry_after(tmp_path, database_url, database, llm_sandbox):
    settings = llm_settings(tmp_path, database_url, llm_sandbox, LLM_MAX_CONCURRENT="2")
    _, _, key = customer_with_instance(database, settings.secret_key, "cap@example.com")
    llm_sandbox.llm.chunk_delay = 0.1
    with proxy_client(settings, database) as proxy:
        body = {"model": "sandbox-small", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {key}"}
        with proxy.stream("POST", CHAT, json=body, headers=headers) as first:
            with proxy.stream("POST", CHAT, json=body, headers=headers) as second:
                assert first.status_code == second.status_code == 200
                third = ask(proxy, key)
                assert third.status_code == 429 and int(third.headers["Retry-After"]) > 0
                assert third.json()["error"]["code"] == "too_many_requests"
                second.read()
            first.read()
        recorder(proxy).flush()
        assert ask(proxy, key).status_code == 200


def test_a_client_that_leaves_mid_stream_is_charged_what_was_generated(
    proxy, database, customer, llm_sandbox
):
    key = customer[2]
    llm_sandbox.llm.chunk_delay = 0.05
    body = {"model": "sandbox-small", "stream": True, "messages": [{"role": "user", "content": "w " * 40}]}
    with proxy.stream("POST", CHAT, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        lines = response.iter_lines()
        assert [next(lines) for _ in range(4)]  # the first words, then the client hangs up
    deadline = time.monotonic() + 15
    while not (rows := usage_rows(proxy, database)) and time.monotonic() < deadline:
        time.sleep(0.1)
    upstream = llm_sandbox.llm.completions()[-1]
    assert upstream.completion_tokens == 44
    [row] = rows
    assert (row.prompt_tokens, row.completion_tokens) == (upstream.prompt_tokens, 44)
    assert_settled(proxy, database)


def test_fallback_when_primary_fails(proxy, database, customer, llm_sandbox):
    backup = llm_sandbox.llm_upstreams[BACKUP]
    before = len(backup.completions())
    for status in (503, 429):
        llm_sandbox.faults.add(service="llm", path="/v1/chat/completions", status=status, fail_next=1)
        response = ask(proxy, customer[2])
        assert response.status_code == 200, response.json()
    assert len(backup.completions()) == before + 2
    llm_sandbox.faults.add(service="llm", status=500, fail_next=1)
    llm_sandbox.faults.add(service=BACKUP, status=500, fail_next=1)
    response = ask(proxy, customer[2])
    assert response.status_code == 503 and response.json()["error"]["code"] == "upstream_unavailable"
    recorder(proxy).flush()
    assert_settled(proxy, database)  # the refused request's reservation was released


def test_rate_limit_per_key(tmp_path, database_url, database, llm_sandbox):
    settings = llm_settings(tmp_path, database_url, llm_sandbox, LLM_RATE_LIMIT="2 per minute")
    _, _, key = customer_with_instance(database, settings.secret_key, "rl@example.com")
    with proxy_client(settings, database) as proxy:
        headers = {"Authorization": f"Bearer {key}"}
        responses = [proxy.get("/llm/v1/models", headers=headers) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].json()["error"]["code"] == "rate_limited" and responses[2].headers["Retry-After"]


def test_rotation_from_the_dashboard(client, proxy, database, settings):
    """The owner asks for a new key; no page shows one (the web app cannot derive keys); the old
    key works until a worker issues the new one for the server."""
    register(client, email="rotor@example.com")
    instance_id = client.post("/api/instances", json={}).get_json()["instance"]["id"]
    assert instance_row(database, instance_id).llm_key_hash is None  # no key before a worker's
    old_key = issue_key(database, settings, instance_id)
    before = instance_row(database, instance_id)
    assert ask(proxy, old_key).status_code == 200
    page = client.post("/dashboard/instance/llm-key", follow_redirects=True).get_data(as_text=True)
    after = instance_row(database, instance_id)
    assert after.llm_key_version == before.llm_key_version + 1
    assert after.generation == before.generation + 1
    assert 'id="llm-key-rotated"' in page and "clk_" not in page
    assert ask(proxy, old_key).status_code == 200  # the server still runs it
    new_key = issue_key(database, settings, instance_id)
    assert new_key != old_key and instance_row(database, instance_id).llm_key_hash == credentials.key_hash(
        new_key
    )
    assert refused_soon(proxy, old_key).status_code == 401  # never ready: nothing to roll out
    assert ask(proxy, new_key).status_code == 200


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


def test_platform_key_never_leaves(client, proxy, database, customer, llm_sandbox, caplog):
    caplog.set_level("DEBUG")
    _, _, key = customer
    secrets = (llm_sandbox.llm_key, backup_key(llm_sandbox))
    llm_sandbox.faults.add(service="llm", status=500, fail_next=1)
    responses = [
        ask(proxy, key),
        ask(proxy, key, stream=True),
        ask(proxy, "clk_bad"),
        proxy.get("/llm/v1/models", headers={"Authorization": f"Bearer {key}"}),
    ]
    llm_sandbox.faults.add(service="llm", status=500, fail_next=1)
    llm_sandbox.faults.add(service=BACKUP, status=500, fail_next=1)
    responses.append(ask(proxy, key))
    seen = [r.text + str(r.headers) for r in responses]
    register(client, email="pages@example.com")
    client.post("/api/instances", json={})
    for response in (
        client.get("/dashboard"),
        client.post("/dashboard/instance/llm-key"),
        client.get("/account"),
    ):
        seen.append(response.get_data(as_text=True) + str(response.headers))
    assert not any(secret in text for text in seen for secret in secrets)
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
