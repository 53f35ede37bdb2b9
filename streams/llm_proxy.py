"""The OpenAI-compatible LLM proxy for customer instances: `/llm/v1/chat/completions` and
`/llm/v1/models`, authenticated by the instance's own key, metered and capped per owner.

A request is admitted (key, open-request cap, a quota reservation inside its process's lease:
clawdet/llm/ledger.py) before the upstream is asked. Streams pass through chunk by chunk; the
relay reads the upstream to its end even when the client has gone, so the usage chunk at the
end is always charged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
from limits import parse
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clawdet.errors import UserFacingError
from clawdet.instances import credentials
from clawdet.llm import admission as admissions
from clawdet.llm import metering
from clawdet.settings import Settings
from streams.http import NO_STORE, error_response, json_body, services, unexpected_error

log = logging.getLogger(__name__)

PASSED_HEADERS = ("Content-Type", "Cache-Control", "x-request-id")
# The caller's own mistakes pass through as the upstream words them; anything else is ours to
# word, since an upstream's error body may name the platform's key or its account.
CLIENT_ERRORS = {400, 404, 413, 422}


class KeyRateLimiter:
    """LLM_RATE_LIMIT per instance key (the web app's limiter storage, its async flavour)."""

    def __init__(self, settings: Settings):
        uri = settings.ratelimit_storage_uri
        options = (
            {"implementation": "redispy"} if uri.startswith("redis") else {}
        )  # redis-py, as Flask-Limiter
        self.limiter = FixedWindowRateLimiter(storage_from_string(f"async+{uri}", **options))
        self.limit = parse(settings.llm_rate_limit)

    async def hit(self, key: str) -> None:
        identity = credentials.key_hash(key)
        if await self.limiter.hit(self.limit, "llm", identity):
            return
        reset, _ = await self.limiter.get_window_stats(self.limit, "llm", identity)
        raise UserFacingError(
            "rate_limited",
            f"Too many requests ({self.limit}).",
            "Wait a minute, then try again.",
            status=429,
            headers={"Retry-After": str(max(1, int(reset - time.time()) + 1))},
        )


def upstream_failed(status: int) -> UserFacingError:
    log.warning("llm upstream answered HTTP %d", status)
    return UserFacingError(
        "upstream_error",
        "The language model could not answer this request.",
        "Try again in a minute.",
        status=502,
    )


async def chat_completions(request: Request) -> Response | Relay:
    box = services(request)
    key = admissions.bearer_key(request.headers.get("authorization"))
    await box.rate_limiter.hit(key)
    body = await json_body(request, model=str, messages=list, stream=bool, stream_options=dict)
    if not body.get("model"):
        raise UserFacingError(
            "invalid_request",
            "The body must be a JSON object with a model.",
            "Send an OpenAI chat completion request.",
        )
    ticket = await box.ledger.reserve(await box.ledger.caller(key), body)
    admissions.set_max_tokens(body, ticket.max_tokens)
    stream = bool(body.get("stream"))
    if stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}

    def charge(usage: dict | None, answer_tokens: int) -> None:
        row = metering.entry(ticket, body["model"], usage, answer_tokens)
        box.ledger.settle(ticket, row.prompt_tokens + row.completion_tokens)
        box.recorder.submit(row)

    try:
        upstream = await box.upstreams.open("POST", "/chat/completions", json.dumps(body).encode())
    except BaseException:
        box.ledger.settle(ticket, 0)
        raise
    try:
        headers = {name: upstream.headers[name] for name in PASSED_HEADERS if name in upstream.headers}
        if stream and upstream.status == 200:
            return Relay(
                upstream, {**headers, "X-Accel-Buffering": "no"}, charge, box.settings.llm_request_max_seconds
            )
        async with asyncio.timeout(box.settings.llm_request_max_seconds):
            content = await upstream.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        upstream.release()
        box.ledger.settle(ticket, 0)
        log.warning("llm upstream broke off an answer: %s", type(exc).__name__)
        raise upstream_failed(502) from None
    except BaseException:  # cancelled (the server stops): the upstream may have answered in full
        upstream.release()
        charge(
            {
                "prompt_tokens": ticket.prompt_ceiling,
                "completion_tokens": ticket.tokens - ticket.prompt_ceiling,
            },
            0,
        )
        raise
    upstream.release()
    if upstream.status == 200:
        charge(metering.usage_of(content), metering.estimate(content))
    else:
        box.ledger.settle(ticket, 0)
        if upstream.status not in CLIENT_ERRORS:
            raise upstream_failed(upstream.status)
    return Response(content, status_code=upstream.status, headers=headers)


class Relay:
    """Passes an upstream stream through as it arrives and charges it once it ended. A client
    that goes away stops receiving, not the reading: the usage comes at the very end. Whatever
    happens once it exists, it charges exactly once."""

    def __init__(self, upstream: aiohttp.ClientResponse, headers: dict[str, str], charge, max_seconds: float):
        self.upstream, self.headers, self.charge, self.max_seconds = upstream, headers, charge, max_seconds

    async def __call__(self, scope, receive, send) -> None:
        tap = metering.StreamTap()
        client = False
        try:
            raw = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in self.headers.items()
            ]
            client = await _sent(send, {"type": "http.response.start", "status": 200, "headers": raw})
            async with asyncio.timeout(self.max_seconds):
                async for chunk in self.upstream.content.iter_any():
                    tap.feed(chunk)
                    if client:
                        client = await _sent(send, _body(chunk, more=True))
        except (aiohttp.ClientError, TimeoutError, UnicodeEncodeError) as exc:
            log.warning("llm upstream stream broke off: %s", type(exc).__name__)
        finally:
            self.upstream.release()
            self.charge(tap.usage, tap.chunks)
        if client:
            await _sent(send, _body(b"", more=False))


def _body(chunk: bytes, more: bool) -> dict:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


async def _sent(send, message: dict) -> bool:
    """Whether the client is still there to receive."""
    try:
        await send(message)
        return True
    except OSError:
        return False


async def models(request: Request) -> Response:
    box = services(request)
    key = admissions.bearer_key(request.headers.get("authorization"))
    await box.rate_limiter.hit(key)
    await box.ledger.caller(key)
    upstream = await box.upstreams.open("GET", "/models")
    try:
        content = await upstream.read()
    except aiohttp.ClientError:
        raise upstream_failed(502) from None
    finally:
        upstream.release()
    if upstream.status != 200:
        raise upstream_failed(upstream.status)
    return Response(content, headers={**NO_STORE, "Content-Type": "application/json"})


async def serve_chat(scope, receive, send) -> None:
    """POST CHAT_PATH as a bare ASGI app (streams.StreamServer calls it ahead of its router and
    middleware): the endpoint, its errors answered as the stream server's exception handlers do."""
    request = Request(scope, receive)
    try:
        response = await chat_completions(request)
    except UserFacingError as error:
        response = await error_response(request, error)
    except Exception as error:
        response = await unexpected_error(request, error)
    await response(scope, receive, send)


CHAT_PATH = "/llm/v1/chat/completions"
routes = [
    Route(CHAT_PATH, chat_completions, methods=["POST"]),  # other methods: 405 from the router
    Route("/llm/v1/models", models, methods=["GET"]),
]
