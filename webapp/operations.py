"""The operations side of the web app, installed by `init_app`: request ids and request log
lines, `/metrics`, the admin console, the platform health checks, and in sandbox mode the
sandbox mail sink's inbox at `/_sandbox/mail`."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Flask, g, jsonify, request
from sqlalchemy import event
from structlog.contextvars import bind_contextvars, clear_contextvars

from clawdet.logs import clean_request_id, current_request_id
from clawdet.ops.platform_health import PlatformHealth
from clawdet.settings import Settings
from db.engine import Database
from db.models import InstanceEvent, OperationRequest, utcnow

log = logging.getLogger("clawdet.http")

sandbox_bp = Blueprint("sandbox_mail", __name__)


def init_app(app: Flask) -> None:
    from webapp import admin, metrics

    settings: Settings = app.extensions["clawdet.settings"]
    database: Database = app.extensions["clawdet.db"]
    install_request_ids(app)
    metrics.install(app, database)
    app.register_blueprint(admin.bp)
    app.extensions["clawdet.platform_health"] = PlatformHealth(database)
    remember_operation_requests(database)
    if settings.sandbox:
        app.register_blueprint(sandbox_bp)


def install_request_ids(app: Flask) -> None:
    @app.before_request
    def _bind_request_id():
        clear_contextvars()
        g.request_id = clean_request_id(request.headers.get("X-Request-ID"))
        g.request_started = time.perf_counter()
        bind_contextvars(request_id=g.request_id)

    @app.after_request
    def _echo_request_id(response):
        request_id = g.get("request_id")
        if request_id:
            response.headers["X-Request-ID"] = request_id
            seconds = time.perf_counter() - g.get("request_started", time.perf_counter())
            log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={"status": response.status_code, "seconds": round(seconds, 4)},
            )
        return response

    @app.teardown_request
    def _unbind(_exc):
        clear_contextvars()


def remember_operation_requests(database: Database) -> None:
    """When a web request queues work on an instance (a `status` event), remember its request id,
    so the worker's log lines for that operation carry it."""
    if not event.contains(database.sessions, "before_flush", _remember_request_id):
        event.listen(database.sessions, "before_flush", _remember_request_id)


def _remember_request_id(session, _context, _instances) -> None:
    request_id = current_request_id()
    if not request_id:
        return
    asked = {
        obj.instance_id: obj.generation
        for obj in session.new
        if isinstance(obj, InstanceEvent) and obj.kind == "status" and obj.instance_id
    }
    pending = {obj.instance_id: obj for obj in session.new if isinstance(obj, OperationRequest)}
    with session.no_autoflush:
        for instance_id, generation in asked.items():
            row = pending.get(instance_id) or session.get(OperationRequest, instance_id)
            if row is None:
                session.add(
                    OperationRequest(
                        instance_id=instance_id, request_id=request_id, generation=generation, at=utcnow()
                    )
                )
            else:
                row.request_id, row.generation, row.at = request_id, generation, utcnow()


def platform_health_response(app: Flask):
    """For anyone (load balancers): 503 only when this process cannot serve (its database);
    "degraded" (200) when something the workers check is down or unchecked lately, so a worker
    redeploy or a cloud outage never pulls the web tier. What and why only for operators."""
    from flask_login import current_user

    from webapp.security import operator_view

    checks = app.extensions["clawdet.platform_health"].checks()
    down = [name for name, check in checks.items() if not check.ok]
    serving = checks["database"].ok  # what this process needs to serve; the rest is the workers'
    body: dict = {"status": "ok" if not down else "degraded" if serving else "down"}
    settings: Settings = app.extensions["clawdet.settings"]
    if operator_view(settings.metrics_token, bool(getattr(current_user, "is_admin", False))):
        body |= {"down": down, "checks": {name: check.as_dict() for name, check in checks.items()}}
    return jsonify(body), (200 if serving else 503)


@sandbox_bp.get("/_sandbox/mail")
def sandbox_mail():
    """What the sandbox's SMTP sink received, newest first (sandbox mode only, admins only:
    it holds everyone's sign-in and reset links)."""
    from flask import abort, current_app
    from flask_login import current_user

    if not getattr(current_user, "is_admin", False):
        abort(404)
    from sandbox.mail_sink import read_messages

    settings: Settings = current_app.extensions["clawdet.settings"]
    folder = settings.data_dir / "sandbox" / "mail"
    if not folder.is_dir():
        return jsonify(messages=[], folder=str(folder))
    messages = read_messages(folder)
    to = request.args.get("to")
    if to:
        messages = [m for m in messages if to.lower() in m["to"].lower()]
    return jsonify(messages=list(reversed(messages)), folder=str(folder))
