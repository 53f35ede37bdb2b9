"""The platform's LLM upstreams: the primary and an optional fallback, tried in order.

A failure (connect error, timeout, 5xx, 429) moves on to the next upstream, which is only
possible before any byte went to the client: `open` returns a response whose status and headers
have arrived and whose body has not been read. The platform's keys never leave this module:
errors and log lines name the upstream ("primary", "fallback"), never its key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import aiohttp
import httpx

from clawdet.errors import UserFacingError
from clawdet.settings import Settings
from clawdet.tls import verifying_context

log = logging.getLogger(__name__)

RETRYABLE = {429, 500, 502, 503, 504}
KEY_REFUSALS = (b"incorrect api key", b"invalid api key", b"invalid_api_key", b"api key not valid")


@dataclass(frozen=True)
class Upstream:
    name: str
    url: str
    key: str = field(repr=False)


def upstreams(settings: Settings) -> list[Upstream]:
    found = [Upstream("primary", settings.llm_primary_url, settings.llm_primary_key)]
    if settings.llm_fallback_url:
        found.append(Upstream("fallback", settings.llm_fallback_url, settings.llm_fallback_key))
    return found


def headers(upstream: Upstream) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {upstream.key}",
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
    }


def usable(upstream: Upstream, status: int, method: str, path: str) -> bool:
    """Whether an answer with `status` goes to the client, or the next upstream is asked."""
    if status in RETRYABLE:
        log.warning("llm upstream %s: HTTP %d on %s %s", upstream.name, status, method, path)
        return False
    if status in (401, 403):
        # Our key was refused: the client must not see the upstream's message (it may echo the key).
        log.error("llm upstream %s refused the platform key (HTTP %d)", upstream.name, status)
        return False
    return True


def unavailable() -> UserFacingError:
    return UserFacingError(
        "upstream_unavailable",
        "The language model is not available right now.",
        "Try again in a minute.",
        status=503,
        headers={"Retry-After": "30"},
    )


async def _names_our_key(upstream: Upstream, response: aiohttp.ClientResponse) -> bool:
    """Some upstreams answer a refused key with a 400 that quotes part of it: ours to hide."""
    if response.status != 400:
        return False
    try:
        content = (await response.read()).lower()  # kept: the caller's read() gets it again
    except aiohttp.ClientError:
        return True
    if any(phrase in content for phrase in KEY_REFUSALS):
        log.error("llm upstream %s refused the platform key (HTTP 400)", upstream.name)
        return True
    return False


class UpstreamPool:
    """Blocking, for the web app's short calls (the trial chat)."""

    def __init__(self, settings: Settings):
        self.upstreams = upstreams(settings)
        self.client = httpx.Client(
            timeout=httpx.Timeout(settings.llm_timeout, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            verify=verifying_context(),
        )

    def open(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        """The first upstream that answers without a retryable failure; the caller closes it."""
        for upstream in self.upstreams:
            request = self.client.build_request(
                method, upstream.url + path, content=body, headers=headers(upstream)
            )
            try:
                response = self.client.send(request, stream=True)
            except httpx.TransportError as exc:
                log.warning("llm upstream %s: %s on %s %s", upstream.name, type(exc).__name__, method, path)
                continue
            if not usable(upstream, response.status_code, method, path):
                response.close()
                continue
            return response
        raise unavailable()

    def close(self) -> None:
        self.client.close()


class AsyncUpstreamPool:
    """For the proxy: one pooled aiohttp session, so an open stream is a socket, not a thread.
    Make it inside the event loop that uses it."""

    def __init__(self, settings: Settings):
        self.upstreams = upstreams(settings)
        self.timeout = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=settings.llm_timeout)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=8192, keepalive_timeout=30),
            auto_decompress=False,
            timeout=self.timeout,
        )

    async def open(self, method: str, path: str, body: bytes | None = None) -> aiohttp.ClientResponse:
        """The first upstream that answers without a retryable failure; the caller releases it."""
        for upstream in self.upstreams:
            try:
                response = await self.session.request(
                    method, upstream.url + path, data=body, headers=headers(upstream)
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("llm upstream %s: %s on %s %s", upstream.name, type(exc).__name__, method, path)
                continue
            if not usable(upstream, response.status, method, path) or await _names_our_key(
                upstream, response
            ):
                response.release()
                continue
            return response
        raise unavailable()

    async def close(self) -> None:
        await self.session.close()
