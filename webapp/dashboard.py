"""The customer's dashboard: plan status, the instance and its progress."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import login_required

from db.errors import UserFacingError
from programs.tiers import LOCATIONS
from provisioner import instances
from webapp import dbs, settings
from webapp.auth import client_ip, current

bp = Blueprint("dashboard", __name__)


@bp.get("/dashboard")
@login_required
def show(error: UserFacingError | None = None, form: dict | None = None):
    user = current()
    if not user.details_complete:
        return redirect(url_for("auth.details_page"))
    instance = instances.active_instance(dbs(), user)
    return render_template("dashboard.html", user=user, instance=instance,
                           tiers=instances.tiers_for(user), regions=LOCATIONS,
                           error=error, form=form or {}), (error.status if error else 200)


@bp.post("/dashboard/instance")
@login_required
def create_instance():
    form = request.form
    try:
        instances.request_instance(dbs(), current(), secret=settings().secret_key,
                                   subdomain=form.get("subdomain") or None,
                                   tier=form.get("tier") or None, region=form.get("region") or None,
                                   ip=client_ip())
        dbs().commit()
    except UserFacingError as exc:
        dbs().rollback()
        return show(error=exc, form=form)
    return redirect(url_for("dashboard.show"), code=303)
