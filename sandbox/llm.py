"""An OpenAI-compatible LLM upstream with deterministic answers.

The reply is derived from the last user message ("Sandbox reply to: ..."), token counts are
word counts, so tests can assert exact usage figures. Streaming sends one SSE chunk per word
with ``chunk_delay`` seconds between chunks, which lets a test prove a proxy does not buffer.
Several upstreams can run at once (``Sandbox.add_llm_upstream``), each with its own key.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import hmac
import json
import math
import threading
import time
from typing import Any

from aiohttp import web

from .faults import FaultInjector
from .http_common import RequestJournal, fault_and_journal_middleware, json_response

DEFAULT_MODELS = ("sandbox-small", "sandbox-large", "gpt-4o-mini", "gpt-4o")


@dataclasses.dataclass(frozen=True)
class CompletionRecord:
    model: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    at: float
    conversation: str = ""  # every user and assistant message's text, for tests to look into


def count_tokens(text: str) -> int:
    return len(text.split())


def message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # the "parts" form: [{"type": "text", "text": ...}]
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


INTERNAL_CONTEXT = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"  # OpenClaw's own context, not the person


def reply_for(messages: list[Any]) -> str:
    said = (message_text(m) for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user")
    last_user = next((text for text in said if not text.lstrip().startswith(INTERNAL_CONTEXT)), "")
    words = last_user.split()
    digest = hashlib.sha256(last_user.encode()).hexdigest()[:8]
    echoed = " ".join(words[:64]) if words else "(nothing)"
    return f"Sandbox reply {digest} to: {echoed}"


def _openai_error(
    status: int,
    message: str,
    error_type: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return json_response(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}},
        status=status,
        headers=headers,
    )


class LLMUpstream:
    def __init__(
        self,
        name: str,
        key: str,
        faults: FaultInjector,
        journal: RequestJournal,
        chunk_delay: float = 0.0,
        models: tuple[str, ...] = DEFAULT_MODELS,
    ) -> None:
        self.name = name
        self.keys = {key}
        self.key = key
        self.faults = faults
        self.journal = journal
        self.chunk_delay = chunk_delay
        self.models = models
        self.url = ""
        self._log: collections.deque[CompletionRecord] = collections.deque(maxlen=5000)
        self._lock = threading.Lock()

    def add_key(self, key: str) -> None:
        self.keys.add(key)

    def completions(self) -> list[CompletionRecord]:
        with self._lock:
            return list(self._log)

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                fault_and_journal_middleware(
                    lambda: self.name, self.faults, self.journal, self._fault_response
                )
            ]
        )
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.list_models)
        return app

    @staticmethod
    def _fault_response(status: int, retry_after: float | None) -> web.Response:
        headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after else None
        if status == 429:
            return _openai_error(
                429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", headers=headers
            )
        return _openai_error(
            status,
            f"The server had an error while processing your request ({status}).",
            "server_error",
            None,
            headers=headers,
        )

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and any(hmac.compare_digest(key.strip(), k) for k in self.keys)

    @staticmethod
    def _unauthorized(request: web.Request) -> web.Response:
        _, _, key = request.headers.get("Authorization", "").partition(" ")
        shown = f"{key[:3]}...{key[-4:]}" if len(key) > 8 else "(none)"
        return _openai_error(
            401, f"Incorrect API key provided: {shown}.", "invalid_request_error", "invalid_api_key"
        )

    async def list_models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized(request)
        return json_response(
            {
                "object": "list",
                "data": [
                    {"id": model, "object": "model", "created": 1700000000, "owned_by": "clawdet-sandbox"}
                    for model in self.models
                ],
            }
        )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized(request)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _openai_error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error", None
            )
        if not isinstance(body, dict):
            return _openai_error(
                400, "The request body must be a JSON object.", "invalid_request_error", None
            )
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _openai_error(
                400, "you must provide a model parameter", "invalid_request_error", None, "model"
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _openai_error(
                400, "'messages' must be a non-empty array", "invalid_request_error", None, "messages"
            )
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        words = reply_for(messages).split()
        finish_reason = "stop"
        if isinstance(max_tokens, int) and 0 < max_tokens < len(words):
            words, finish_reason = words[:max_tokens], "length"
        prompt_tokens = sum(count_tokens(message_text(m)) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        stream = bool(body.get("stream"))
        with self._lock:
            said = "\n".join(
                message_text(m)
                for m in messages
                if isinstance(m, dict) and m.get("role") in ("user", "assistant")
            )
            self._log.append(CompletionRecord(model, stream, prompt_tokens, len(words), time.time(), said))
        completion_id = (
            "chatcmpl-" + hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:24]
        )
        created = int(time.time())
        if not stream:
            return json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": " ".join(words)},
                            "logprobs": None,
                            "finish_reason": finish_reason,
                        }
                    ],
                    "usage": usage,
                    "system_fingerprint": "fp_sandbox",
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await self._stream(
            request, completion_id, created, model, words, finish_reason, usage if include_usage else None
        )

    async def _stream(
        self,
        request: web.Request,
        completion_id: str,
        created: int,
        model: str,
        words: list[str],
        finish_reason: str,
        usage: dict[str, int] | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        def chunk(delta: dict[str, Any], reason: str | None, with_usage: bool = False) -> bytes:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_sandbox",
                "choices": []
                if with_usage
                else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
            }
            if usage is not None:
                payload["usage"] = usage if with_usage else None
            return f"data: {json.dumps(payload)}\n\n".encode()

        await response.write(chunk({"role": "assistant", "content": ""}, None))
        for index, word in enumerate(words):
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            await response.write(chunk({"content": word if index == 0 else " " + word}, None))
        await response.write(chunk({}, finish_reason))
        if usage is not None:
            await response.write(chunk({}, None, with_usage=True))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
