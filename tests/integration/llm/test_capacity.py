"""A real `clawdet web` process under the load of real chats: 100 slow LLM streams and 20 open
progress streams at once, while sign-in and /api/health still answer within a second (with a
thread per open stream, 16 streams froze them)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from db.engine import Database
from tests.fixtures.llm import LiveServer, customer_with_instance, llm_env

STREAMS, CUSTOMERS, PROGRESS_STREAMS = 100, 10, 20
CHUNK_DELAY = 0.2  # 24 words a reply: about 5 s a stream


@pytest.fixture
def live(tmp_path, llm_sandbox):
    server = LiveServer(tmp_path, llm_env(llm_sandbox, LLM_RATE_LIMIT="1000 per minute")).start()
    yield server
    server.stop()


async def chat(http: httpx.AsyncClient, key: str) -> dict:
    body = {
        "model": "sandbox-small",
        "stream": True,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": " ".join(["slow"] * 20)}],
    }
    usage = None
    async with http.stream(
        "POST", "/llm/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"prompt_tokens"' in line:
                usage = json.loads(line[6:])["usage"]
    return usage


async def watch(http: httpx.AsyncClient, path: str, opened: asyncio.Event, count: list[int]) -> None:
    async with http.stream("GET", path) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line == "event: state":
                count[0] += 1
                if count[0] >= PROGRESS_STREAMS:
                    opened.set()


async def timed(call) -> tuple[float, int]:
    started = time.perf_counter()
    response = await call
    return time.perf_counter() - started, response.status_code


async def signed_in_web_client(base: str) -> tuple[httpx.AsyncClient, str]:
    http = httpx.AsyncClient(base_url=base, timeout=30)
    token = (await http.get("/api/auth/csrf")).json()["csrfToken"]
    for path, body in (
        ("/api/auth/register", {"name": "Lee", "email": "lee@example.com", "password": "correct horse"}),
        ("/api/auth/details", {"email": "lee@example.com", "acceptTerms": True}),
    ):
        response = await http.post(path, json=body, headers={"X-CSRFToken": token})
        assert response.status_code in (200, 201), response.text
        token = response.json().get("csrfToken", token)
    created = await http.post("/api/instances", json={}, headers={"X-CSRFToken": token})
    assert created.status_code == 202, created.text
    return http, f"/api/instances/{created.json()['instance']['id']}/events"


async def sign_in(base: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        token = (await http.get("/api/auth/csrf")).json()["csrfToken"]
        body = {"email": "lee@example.com", "password": "correct horse"}
        return await http.post("/api/auth/login", json=body, headers={"X-CSRFToken": token})


def test_streams_leave_sign_in_and_health_answering(live, llm_sandbox):
    database = Database(live.database_url)
    keys = [customer_with_instance(database, "live-secret", f"c{i}@example.com")[2] for i in range(CUSTOMERS)]
    database.dispose()
    llm_sandbox.llm.chunk_delay = CHUNK_DELAY

    async def scenario():
        web, events = await signed_in_web_client(live.base)
        limits = httpx.Limits(max_connections=STREAMS + 10)
        streams = httpx.AsyncClient(base_url=live.base, timeout=60, limits=limits)
        try:
            opened, count = asyncio.Event(), [0]
            watchers = [
                asyncio.create_task(watch(web, events, opened, count)) for _ in range(PROGRESS_STREAMS)
            ]
            await asyncio.wait_for(opened.wait(), 20)
            started = time.perf_counter()
            chats = [asyncio.create_task(chat(streams, keys[i % CUSTOMERS])) for i in range(STREAMS)]
            await asyncio.sleep(1.5)  # every stream is open and slow now
            checks = [await timed(sign_in(live.base)), await timed(web.get("/api/health"))]
            still_open = sum(not task.done() for task in chats)
            usages = await asyncio.gather(*chats)
            elapsed = time.perf_counter() - started
            for task in watchers:
                task.cancel()
            return checks, still_open, usages, elapsed
        finally:
            await streams.aclose()
            await web.aclose()

    try:
        checks, still_open, usages, elapsed = asyncio.run(scenario())
    finally:
        llm_sandbox.llm.chunk_delay = 0.0
    (sign_in_seconds, sign_in_status), (health_seconds, health_status) = checks
    assert still_open == STREAMS, "the streams ended before the checks ran; make them slower"
    assert sign_in_status == 200 and sign_in_seconds < 1.0, (sign_in_status, sign_in_seconds)
    assert health_status in (200, 503) and health_seconds < 1.0, (health_status, health_seconds)
    assert all(usage and usage["completion_tokens"] == 24 for usage in usages)
    assert elapsed < 3 * 24 * CHUNK_DELAY  # concurrent, not one after another in 16s
