"""Probing gateways' /healthz: one, or the whole fleet concurrently."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from clawdet.tls import verifying_context

PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class Probe:
    url: str
    ok: bool
    status: int | None
    seconds: float
    error: str | None = None


async def _probe(client: httpx.AsyncClient, url: str) -> Probe:
    started = time.perf_counter()
    try:
        response = await client.get(url)
        return Probe(url, response.status_code == 200, response.status_code, time.perf_counter() - started)
    except httpx.HTTPError as exc:
        return Probe(url, False, None, time.perf_counter() - started, type(exc).__name__)


async def probe_all_async(
    urls: list[str], *, concurrency: int = 200, timeout: float = PROBE_TIMEOUT
) -> dict[str, Probe]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, verify=verifying_context()) as client:

        async def bounded(url: str) -> Probe:
            async with semaphore:
                return await _probe(client, url)

        results = await asyncio.gather(*(bounded(url) for url in urls))
    return {probe.url: probe for probe in results}


def probe_all(urls: list[str], **kwargs) -> dict[str, Probe]:
    """Probe from synchronous code; from inside a running event loop, on a thread of its own."""
    if not urls:
        return {}
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(probe_all_async(urls, **kwargs))
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, probe_all_async(urls, **kwargs)).result()


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> Probe:
    started = time.perf_counter()
    try:
        response = httpx.get(url, timeout=timeout, verify=verifying_context())
        return Probe(url, response.status_code == 200, response.status_code, time.perf_counter() - started)
    except httpx.HTTPError as exc:
        return Probe(url, False, None, time.perf_counter() - started, type(exc).__name__)


def wait_healthy(
    url: str, deadline_seconds: float, *, cancelled: Callable[[], bool] = lambda: False
) -> Probe:
    """Poll until /healthz answers 200 or the deadline passes (interval grows to 5 s)."""
    end = time.monotonic() + deadline_seconds
    interval = 0.25
    while True:
        result = probe(url)
        if result.ok or time.monotonic() >= end or cancelled():
            return result
        time.sleep(min(interval, max(0.0, end - time.monotonic())))
        interval = min(interval * 1.6, 5.0)


CHAT_TIMEOUT = 90.0  # below Cloudflare's 100 s for a proxied request; a cold first answer takes 5-15 s
CHAT_ATTEMPTS = 3
CHECK_MESSAGE = "Clawdet readiness check: reply with one word."


class GatewayNotAnswering(RuntimeError):
    """The gateway is up but cannot answer a chat; the message says why, in plain words."""


def chat_check(
    gateway_url: str,
    token: str,
    *,
    timeout: float = CHAT_TIMEOUT,
    attempts: int = CHAT_ATTEMPTS,
    cancelled: Callable[[], bool] = lambda: False,
) -> str:
    """One chat through the gateway's OpenAI-compatible endpoint, which asks the model through
    the platform's LLM proxy with the instance's own key. Returns the reply's text. Connection
    errors, timeouts and 5xx are tried again (a gateway that just answered /healthz may still be
    warming up); a refused key or token is not. A 429 (the owner's quota or rate limit) counts
    as answered: the gateway and its key work."""
    problem = "the assistant did not answer a test message"
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(
                f"{gateway_url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {token}"},
                json={"model": "openclaw", "messages": [{"role": "user", "content": CHECK_MESSAGE}]},
                timeout=httpx.Timeout(timeout, connect=10.0),
                verify=verifying_context(),
            )
        except httpx.HTTPError as exc:
            problem = f"the assistant did not answer a test message ({type(exc).__name__})"
        else:
            if response.status_code == 200:
                return _reply_text(response)
            if response.status_code == 429:
                return ""
            kind = _error_type(response)
            if response.status_code == 401 and kind == "authentication_error":
                raise GatewayNotAnswering(
                    "the assistant's key for the language model was refused (a stale or wrong LLM key)"
                )
            if response.status_code == 401:
                raise GatewayNotAnswering("the assistant refused its gateway token")
            problem = f"the assistant could not answer a test message (HTTP {response.status_code})"
            if response.status_code < 500 and response.status_code != 408:
                break
        if cancelled():
            break
        if attempt < attempts:
            time.sleep(2.0 * attempt)
    raise GatewayNotAnswering(problem)


def _reply_text(response: httpx.Response) -> str:
    try:
        return response.json()["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        raise GatewayNotAnswering("the assistant answered a test message with something unreadable") from None


def _error_type(response: httpx.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("type") if isinstance(error, dict) else None
