"""The stream server: everything that stays open for long, on an async server (Starlette on
uvicorn), so an open stream costs a coroutine and a socket, not a thread:

- the LLM proxy, `/llm/v1/chat/completions` and `/llm/v1/models` (streams/llm_proxy.py);
- the dashboard's progress streams, `/api/instances/<id>/events` (streams/progress.py).

Flask keeps the pages and the JSON API. `clawdet web` serves both on one port (this app, with
the Flask app mounted behind its routes and run on a thread pool); `clawdet proxy` serves these
routes alone, as many processes as the traffic needs, behind the front proxy (compose.yaml).
"""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from a2wsgi import WSGIMiddleware
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount

from clawdet.errors import UserFacingError
from clawdet.llm.ledger import Ledger
from clawdet.llm.recorder import UsageRecorder
from clawdet.llm.upstream import AsyncUpstreamPool
from clawdet.settings import Settings
from db.engine import Database
from streams import llm_proxy, progress
from streams.http import error_response, http_error, unexpected_error
from streams.sessions import SessionReader

log = logging.getLogger(__name__)

USAGE_SPOOL = "llm-usage-spool.jsonl"


@dataclass
class Services:
    """What the routes share within one process."""

    settings: Settings
    database: Database
    recorder: UsageRecorder
    hub: progress.ProgressHub
    sessions: SessionReader
    rate_limiter: llm_proxy.KeyRateLimiter
    ledger: Ledger
    upstreams: AsyncUpstreamPool | None = field(default=None)  # made inside the event loop


class StreamServer(Starlette):
    """Starlette, except that the LLM proxy's streamed completions go straight to their endpoint
    (llm_proxy.serve_chat, which answers errors as the exception handlers below do). Past the
    router and the three middleware layers an open stream keeps about half the objects alive
    (fewer coroutines, closures and Request copies for the garbage collector to walk) and each
    chunk goes through no wrapper of `send`."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == llm_proxy.CHAT_PATH and scope["method"] == "POST":
            scope["app"] = self
            await llm_proxy.serve_chat(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


GC_THRESHOLDS = (700, 10, 100)  # CPython's, but a full collection after 100 young ones, not 10


def settle_heap() -> None:
    """Keeps the cyclic garbage collector's pauses short while streams are open. A full
    collection stops the event loop while it walks every tracked object: the startup heap
    (modules, classes: ~110k objects) and about 70 objects an open stream; with 1000 streams
    open that stopped every stream start and chunk for 95-145 ms, and CPython's default runs one
    each time the heap grew by a quarter, several during a burst of new streams. So the startup
    heap is frozen (never walked again) and a full collection waits for 100 young ones
    (~700,000 new objects: a few thousand stream starts). The young collections, a few ms each,
    still free the short-lived cycles; what an ended stream leaves in a cycle waits for the next
    full collection, and nearly everything of a stream is freed by reference counting anyway."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(
    settings: Settings,
    database: Database | None = None,
    wsgi=None,
    wsgi_threads: int = 16,
    *,
    settle_heap_at_start: bool = False,
):
    """The stream server; with `wsgi` (the Flask app) every other path goes to it.
    `settle_heap_at_start`: `clawdet proxy`, a process of streams alone (the collector's settings
    are process-wide: a process that also runs Flask or workers keeps CPython's)."""
    database = database or Database(settings.database_url)
    recorder = UsageRecorder(database, spool=settings.data_dir / USAGE_SPOOL)
    services = Services(
        settings=settings,
        database=database,
        recorder=recorder,
        hub=progress.ProgressHub(database),
        sessions=SessionReader(settings, database),
        rate_limiter=llm_proxy.KeyRateLimiter(settings),
        ledger=Ledger(
            database,
            recorder,
            max_concurrent=settings.llm_max_concurrent,
            default_max_tokens=settings.llm_default_max_tokens,
        ),
    )

    @asynccontextmanager
    async def lifespan(_app):
        services.upstreams = AsyncUpstreamPool(settings)
        thresholds = gc.get_threshold()
        if settle_heap_at_start:
            settle_heap()
        try:
            yield
        finally:
            if settle_heap_at_start:
                gc.set_threshold(*thresholds)
                gc.unfreeze()
            await services.hub.stop()
            await services.upstreams.close()
            await services.ledger.close()
            recorder.close(5.0)

    routes = [*llm_proxy.routes, *progress.routes]
    if wsgi is not None:
        routes.append(Mount("/", app=WSGIMiddleware(wsgi, workers=wsgi_threads)))
    app = StreamServer(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            UserFacingError: error_response,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
    )
    app.state.services = services
    return app
