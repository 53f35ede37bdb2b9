"""The customer's dashboard: plan status, the instance and its progress, its backups."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import login_required

from clawdet import cloud
from clawdet.backups.requests import Action as BackupAction
from clawdet.errors import UserFacingError
from clawdet.instances import credentials
from clawdet.instances import requests as instances
from clawdet.instances import rotation as llm_keys
from clawdet.instances.lifecycle import STEPS, in_flight
from clawdet.llm import usage as llm_usage
from db.models import Instance
from programs.tiers import LOCATIONS
from webapp import backups, dbs, settings
from webapp.auth import client_ip, current

bp = Blueprint("dashboard", __name__)


@bp.get("/dashboard")
@login_required
def show(error: UserFacingError | None = None, form: dict | None = None):
    user = current()
    if not user.details_complete:
        return redirect(url_for("auth.details_page"))
    instance = instances.active_instance(dbs(), user)
    assistant = open_my_assistant(instance) if instance is not None and instance.status == "ready" else None
    response = (
        render_template(
            "dashboard.html",
            user=user,
            instance=instance,
            assistant=assistant,
            busy=instance is not None and in_flight(instance),
            steps=STEPS,
            tiers=instances.tiers_for(user),
            other_tiers=[t for t in instances.tiers_for(user) if instance is None or t != instance.tier],
            regions=LOCATIONS,
            usage=llm_usage.month_summary(dbs(), user),
            llm_key_rotated=request.args.get("rotated") == "llm-key",
            backups=backups.card(dbs(), instance) if instance is not None else None,
            error=error,
            form=form or {},
        ),
        (error.status if error else 200),
    )
    if assistant:  # a page with a secret on it is never cached
        response = (response[0], response[1], {"Cache-Control": "no-store"})
    return response


@dataclass(frozen=True)
class Assistant:
    """How the owner reaches their gateway: the Control UI link (OpenClaw reads `#token=` and
    drops it from the address bar), the token and the WebSocket URL its CLI pairs through."""

    base_url: str
    token: str
    sandbox: bool

    @property
    def control_url(self) -> str:
        return f"{self.base_url}/#token={self.token}"

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)


def open_my_assistant(instance: Instance) -> Assistant | None:
    """Where the owner reaches their gateway: https://<fqdn>, or in the sandbox the fake server's
    own address (the cloud target's gateway URL, as the reconciler probes it)."""
    token = credentials.gateway_token(credentials.Roots.of(settings(), worker=False), instance)
    fqdn = (instance.url or "").removeprefix("https://")
    if settings().sandbox:
        try:
            base = cloud.resolve(settings()).gateway_url(fqdn=fqdn, ipv4=instance.ipv4)
        except UserFacingError:
            base = None  # the sandbox is not running: nothing to open
        return Assistant(base, token, sandbox=True) if base else None
    return Assistant(instance.url, token, sandbox=False) if instance.url else None


@bp.post("/dashboard/instance")
@login_required
def create_instance():
    form = request.form
    try:
        instances.request_instance(
            dbs(),
            current(),
            subdomain=form.get("subdomain") or None,
            tier=form.get("tier") or None,
            region=form.get("region") or None,
            ip=client_ip(),
        )
        dbs().commit()
    except UserFacingError as exc:
        dbs().rollback()
        return show(error=exc, form=form)
    return redirect(url_for("dashboard.show"), code=303)


@bp.post("/dashboard/instance/llm-key")
@login_required
def rotate_llm_key():
    """A new key for the server; no page shows it (only the workers derive keys)."""
    instance = instances.active_instance(dbs(), current())
    if instance is None:
        return redirect(url_for("dashboard.show"), code=303)
    try:
        llm_keys.rotate_llm_key(dbs(), instance, actor=current(), ip=client_ip())
        dbs().commit()
    except UserFacingError as exc:
        dbs().rollback()
        return show(error=exc)
    return redirect(url_for("dashboard.show", rotated="llm-key"), code=303)  # a reload asks no more


def _owned(instance_id: str) -> Instance:
    instance = dbs().get(Instance, instance_id)
    if instance is None or instance.user_id != current().id:
        raise UserFacingError("not_found", "No such instance.", "Go back to your dashboard.", status=404)
    return instance


@bp.post(f"/dashboard/instance/<instance_id>/<{instances.route_choice()}:action>")
@login_required
def instance_action(instance_id: str, action: str):
    instance = _owned(instance_id)
    try:
        instances.request_named(dbs(), current(), instance, action, client_ip())
        dbs().commit()
    except UserFacingError as exc:
        dbs().rollback()
        return show(error=exc)
    return redirect(url_for("dashboard.show"), code=303)


@bp.post("/dashboard/instance/<instance_id>/backups/<any(restore, export):action>")
@login_required
def backup_action(instance_id: str, action: str):
    """A restore (in place; the current state is backed up first) or a download link."""
    instance = _owned(instance_id)
    try:
        backups.queue(instance, BackupAction(action), request.form.get("backup") or None)
    except UserFacingError as exc:
        dbs().rollback()
        return show(error=exc)
    return redirect(url_for("dashboard.show") + "#backups", code=303)


@bp.post("/dashboard/instance/<instance_id>/tier")
@login_required
def change_tier(instance_id: str):
    instance = _owned(instance_id)
    try:
        instances.request_tier_change(dbs(), current(), instance, request.form.get("tier", ""), client_ip())
        dbs().commit()
    except UserFacingError as exc:
        dbs().rollback()
        return show(error=exc)
    return redirect(url_for("dashboard.show"), code=303)
