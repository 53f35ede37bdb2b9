"""The OpenAI-compatible LLM upstream: deterministic replies and usage, real streaming."""

from __future__ import annotations

import json
import time

import httpx

from tests.fixtures.sandbox import start_sandbox

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "hello there sandbox"},
]


def post(box, body: dict, key: str | None = None, url: str | None = None, **kwargs) -> httpx.Response:
    return httpx.post(
        (url or box.llm_url) + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key or box.llm_key}"},
        **kwargs,
    )


def test_non_streaming_reply_and_usage_are_deterministic(sandbox):
    first = post(sandbox, {"model": "sandbox-small", "messages": MESSAGES}).json()
    second = post(sandbox, {"model": "sandbox-small", "messages": MESSAGES}).json()
    reply = first["choices"][0]["message"]["content"]
    assert reply == second["choices"][0]["message"]["content"]
    assert reply.endswith("to: hello there sandbox")
    assert first["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": len(reply.split()),
        "total_tokens": 6 + len(reply.split()),
    }
    assert first["object"] == "chat.completion" and first["choices"][0]["finish_reason"] == "stop"
    other = post(sandbox, {"model": "sandbox-small", "messages": [{"role": "user", "content": "bye"}]}).json()
    assert other["choices"][0]["message"]["content"] != reply
    truncated = post(sandbox, {"model": "sandbox-small", "messages": MESSAGES, "max_tokens": 2}).json()
    assert (
        truncated["usage"]["completion_tokens"] == 2 and truncated["choices"][0]["finish_reason"] == "length"
    )
    assert [r.prompt_tokens for r in sandbox.llm.completions()] == [6, 6, 1, 6]


def test_streaming_sends_chunks_as_they_are_made_and_usage_last(sandbox):
    sandbox.llm.chunk_delay = 0.1
    arrivals, events = [], []
    started = time.monotonic()
    with httpx.stream(
        "POST",
        sandbox.llm_url + "/chat/completions",
        headers={"Authorization": f"Bearer {sandbox.llm_key}"},
        json={
            "model": "sandbox-small",
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - started)
                events.append(line[len("data: ") :])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    expected = post(sandbox, {"model": "sandbox-small", "messages": MESSAGES}).json()
    assert text == expected["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == expected["usage"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    # The first word arrived long before the last: nothing was buffered on the way.
    assert arrivals[1] < 0.5 * arrivals[-1]
    assert arrivals[-1] >= 0.1 * (len(text.split()) - 1)


def test_streaming_without_include_usage_has_no_usage_chunk(sandbox):
    with httpx.stream(
        "POST",
        sandbox.llm_url + "/chat/completions",
        headers={"Authorization": f"Bearer {sandbox.llm_key}"},
        json={"model": "m", "messages": MESSAGES, "stream": True},
    ) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert all("usage" not in json.loads(e) for e in events[:-1])


def test_key_check_models_and_bad_requests(sandbox):
    unauthorized = post(sandbox, {"model": "sandbox-small", "messages": MESSAGES}, key="sk-wrong-key-1234")
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["code"] == "invalid_api_key"
    models = httpx.get(
        sandbox.llm_url + "/models", headers={"Authorization": f"Bearer {sandbox.llm_key}"}
    ).json()
    assert "sandbox-small" in {m["id"] for m in models["data"]}
    assert httpx.get(sandbox.llm_url + "/models").status_code == 401
    assert post(sandbox, {"messages": MESSAGES}).status_code == 400
    assert post(sandbox, {"model": "m", "messages": []}).json()["error"]["param"] == "messages"


def test_second_upstream_and_failing_the_first(tmp_path):
    box = start_sandbox(tmp_path / "state.json", extra_llm_upstreams=("fallback",))
    try:
        fallback = box.llm_upstreams["fallback"]
        assert box.llm_url_of("fallback") != box.llm_url and fallback.key != box.llm_key
        box.faults.add(service="llm", status=503, fail_next=1)
        failed = post(box, {"model": "m", "messages": MESSAGES})
        assert failed.status_code == 503 and failed.json()["error"]["type"] == "server_error"
        served = post(
            box, {"model": "m", "messages": MESSAGES}, key=fallback.key, url=box.llm_url_of("fallback")
        )
        assert served.status_code == 200
        assert post(box, {"model": "m", "messages": MESSAGES}).status_code == 200  # only the next one failed
        third = box.add_llm_upstream("third")
        assert (
            post(
                box, {"model": "m", "messages": MESSAGES}, key=third.key, url=box.llm_url_of("third")
            ).status_code
            == 200
        )
        assert set(box.describe()["llm_upstreams"]) == {"llm", "fallback", "third"}
    finally:
        box.stop()
