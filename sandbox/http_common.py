"""What every fake service shares: the request journal and the fault middleware."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .faults import FaultInjector

ErrorRenderer = Callable[[int, "float | None"], web.StreamResponse]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True)
class JournalEntry:
    service: str
    method: str
    path: str
    query: str
    status: int
    at: float


class RequestJournal:
    """The last requests each service answered, so tests can count what a client did."""

    def __init__(self, keep: int = 20000) -> None:
        self._entries: collections.deque[JournalEntry] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def record(self, entry: JournalEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, service: str | None = None) -> list[JournalEntry]:
        with self._lock:
            return [entry for entry in self._entries if service is None or entry.service == service]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(payload),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def fault_and_journal_middleware(
    service: str | Callable[[], str],
    faults: FaultInjector,
    journal: RequestJournal,
    render_error: ErrorRenderer,
) -> Callable[..., Any]:
    """Applies fault rules before the handler, and journals every answer."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = service() if callable(service) else service
        decision = faults.decide(name, request.method, request.path)
        status = 500
        try:
            if decision.latency:
                await asyncio.sleep(decision.latency)
            if decision.fail_status is not None:
                response = render_error(decision.fail_status, decision.retry_after)
            else:
                response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            journal.record(
                JournalEntry(name, request.method, request.path, request.query_string, status, time.time())
            )

    return middleware
