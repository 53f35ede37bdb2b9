"""The page a paused instance's name shows: its DNS record points at the platform while no
server runs, so a request for `<name>.<base domain>` reaches this app and not a dead address."""

from __future__ import annotations

from flask import Flask, render_template, request
from sqlalchemy import select

from clawdet.instances.lifecycle import DesiredState
from db.models import Instance
from webapp import dbs, settings


def install(app: Flask) -> None:
    @app.before_request
    def _instance_names():
        name = instance_name(request.host)
        if name is None or request.path.startswith("/static/"):  # the page's own stylesheet
            return None
        paused = dbs().scalar(
            select(Instance.id).where(
                Instance.subdomain == name, Instance.desired_state == DesiredState.PAUSED.value
            )
        )
        dbs().rollback()
        if not paused:  # another of the platform's own names (the LLM proxy's, say): served as usual
            return None
        page = render_template("paused.html", name=name, public_url=settings().public_url)
        return page, 503, {"Retry-After": "3600", "Cache-Control": "no-store"}


def instance_name(host: str) -> str | None:
    """`bob` for a request to bob.<base domain>; None for the platform's own host and anything
    that is not a single label under the base domain."""
    hostname = host.rsplit(":", 1)[0].lower().rstrip(".")
    own = settings().public_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].lower()
    suffix = "." + settings().base_domain.lower()
    if hostname == own or not hostname.endswith(suffix):
        return None
    name = hostname[: -len(suffix)]
    return name if name and "." not in name else None
