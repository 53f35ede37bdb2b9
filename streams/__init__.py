"""The stream server: everything that stays open for long, on an async server (Starlette on
uvicorn), so an open stream costs a coroutine and a socket, not a thread:

- the LLM proxy, `/llm/v1/chat/completions` and `/llm/v1/models` (streams/llm_proxy.py);
- the dashboard's progress streams, `/api/instances/<id>/events` (streams/progress.py).

Flask keeps the pages and the JSON API. `clawdet web` serves both on one port (this app, with
the Flask app mounted behind its routes and run on a thread pool); `clawdet proxy` serves these
routes alone, as many processes as the traffic needs, behind the front proxy (compose.yaml).
"""

from __future__ import annotations

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


def create_app(settings: Settings, database: Database | None = None, wsgi=None, wsgi_threads: int = 16):
    """The stream server; with `wsgi` (the Flask app) every other path goes to it."""
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
        try:
            yield
        finally:
            await services.hub.stop()
            await services.upstreams.close()
            await services.ledger.close()
            recorder.close(5.0)

    routes = [*llm_proxy.routes, *progress.routes]
    if wsgi is not None:
        routes.append(Mount("/", app=WSGIMiddleware(wsgi, workers=wsgi_threads)))
    app = Starlette(
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
