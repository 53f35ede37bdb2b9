"""The Flask web app: signup, the dashboard, the JSON API. The LLM proxy and the progress
streams are the stream server's (streams/), which `clawdet web` serves on the same port."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from clawdet.accounts import sessions
from clawdet.instances import progress
from clawdet.llm.upstream import UpstreamPool
from clawdet.settings import Settings
from db.engine import Database
from programs import openclaw

T = TypeVar("T")


def create_app(settings: Settings | None = None, database: Database | None = None, **overrides) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_NAME=settings.session_cookie_name,
        PERMANENT_SESSION_LIFETIME=sessions.LIFETIME,
        REMEMBER_COOKIE_HTTPONLY=True,
        MAX_CONTENT_LENGTH=1 * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=settings.secure_cookies,
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage_uri,
        RATELIMIT_HEADERS_ENABLED=True,
        BASE_DOMAIN=settings.base_domain,
    )
    app.config.update(overrides)
    app.extensions["clawdet.settings"] = settings
    app.extensions["clawdet.db"] = database or Database(settings.database_url)
    app.jinja_env.filters["openclaw_version"] = openclaw.version_of
    app.jinja_env.filters["events_path"] = progress.events_path

    from webapp import api, auth, backups, dashboard, pages, trial, x_auth
    from webapp.errors import install_error_handlers
    from webapp.extensions import csrf, limiter, login_manager
    from webapp.security import install_headers

    if settings.trusted_proxies:  # client IPs (rate limits, trial chat) from X-Forwarded-For
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    install_headers(app)
    install_error_handlers(app)
    from webapp import paused

    paused.install(app)
    for blueprint in (pages.bp, auth.bp, dashboard.bp, api.bp):
        app.register_blueprint(blueprint)
    for blueprint in (x_auth.bp, x_auth.profile_bp, trial.bp, backups.bp):
        app.register_blueprint(blueprint)
    from webapp import operations  # admin, /metrics, logs

    operations.init_app(app)

    @app.teardown_appcontext
    def _close_session(_exc):
        session = g.pop("db_session", None)
        if session is not None:
            session.close()

    return app


_making = threading.Lock()


def per_app(app: Flask, key: str, make: Callable[[], T]) -> T:
    """One `make()` per app, made on first use (threads of one app share it)."""
    existing = app.extensions.get(key)
    if existing is None:
        with _making:
            existing = app.extensions.get(key)
            if existing is None:
                existing = app.extensions[key] = make()
    return existing


def llm_pool(app: Flask) -> UpstreamPool:
    """The app's LLM upstreams, with one connection pool."""
    return per_app(app, "clawdet.llm_upstreams", lambda: UpstreamPool(app.extensions["clawdet.settings"]))


def settings() -> Settings:
    return current_app.extensions["clawdet.settings"]


def database() -> Database:
    return current_app.extensions["clawdet.db"]


def dbs() -> Session:
    """The request's database session; views commit explicitly, teardown closes it."""
    if "db_session" not in g:
        g.db_session = database().sessions()
    return g.db_session
