"""The platform's LLM upstreams: the primary and an optional fallback, tried in order.

A failure (connect error, timeout, 5xx, 429) moves on to the next upstream, which is only
possible before any byte went to the client: `open` returns a response whose status and headers
have arrived and whose body has not been read. The platform's keys never leave this module:
errors and log lines name the upstream ("primary", "fallback"), never its key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx

from clawdet.errors import UserFacingError
from clawdet.settings import Settings

log = logging.getLogger(__name__)

RETRYABLE = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Upstream:
    name: str
    url: str
    key: str = field(repr=False)


class UpstreamPool:
    def __init__(self, settings: Settings):
        self.upstreams = [Upstream("primary", settings.llm_primary_url, settings.llm_primary_key)]
        if settings.llm_fallback_url:
            self.upstreams.append(Upstream("fallback", settings.llm_fallback_url, settings.llm_fallback_key))
        self.client = httpx.Client(
            timeout=httpx.Timeout(settings.llm_timeout, connect=5.0),
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256),
        )

    def open(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        """The first upstream that answers without a retryable failure; the caller closes it."""
        for upstream in self.upstreams:
            request = self.client.build_request(
                method,
                upstream.url + path,
                content=body,
                headers={
                    "Authorization": f"Bearer {upstream.key}",
                    "Content-Type": "application/json",
                    "Accept-Encoding": "identity",
                },
            )
            try:
                response = self.client.send(request, stream=True)
            except httpx.TransportError as exc:
                log.warning("llm upstream %s: %s on %s %s", upstream.name, type(exc).__name__, method, path)
                continue
            if response.status_code in RETRYABLE:
                log.warning(
                    "llm upstream %s: HTTP %d on %s %s", upstream.name, response.status_code, method, path
                )
                response.close()
                continue
            if response.status_code in (401, 403):
                # Our key was refused: the client must not see the upstream's message (it may echo the key).
                log.error(
                    "llm upstream %s refused the platform key (HTTP %d)", upstream.name, response.status_code
                )
                response.close()
                continue
            response.extensions["clawdet_upstream"] = upstream.name
            return response
        raise UserFacingError(
            "upstream_unavailable",
            "The language model is not available right now.",
            "Try again in a minute.",
            status=503,
            headers={"Retry-After": "30"},
        )

    def close(self) -> None:
        self.client.close()
