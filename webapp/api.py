"""JSON API: health and the customer's instances."""
from __future__ import annotations

from flask import Blueprint, jsonify, url_for
from flask_login import login_required
from sqlalchemy.exc import SQLAlchemyError

from db.errors import UserFacingError
from db.models import Instance
from provisioner import instances
from webapp import database, dbs, settings
from webapp.auth import _json_body, client_ip, current

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/health")
def health():
    checks = {}
    try:
        database().ping()
        checks["database"] = {"ok": True}
    except SQLAlchemyError as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    ok = all(check["ok"] for check in checks.values())
    return jsonify(status="ok" if ok else "down", checks=checks), (200 if ok else 503)


def instance_json(instance: Instance) -> dict:
    return {
        "id": instance.id, "subdomain": instance.subdomain, "tier": instance.tier,
        "region": instance.region, "desiredState": instance.desired_state,
        "status": instance.status, "statusMessage": instance.status_message,
        "generation": instance.generation, "observedGeneration": instance.observed_generation,
        "url": instance.url, "ipv4": instance.ipv4, "health": instance.health,
        "createdAt": instance.created_at.isoformat(),
        "links": {"self": url_for("api.get_instance", instance_id=instance.id)},
    }


def owned_instance(instance_id: str) -> Instance:
    instance = dbs().get(Instance, instance_id)
    if instance is None or instance.user_id != current().id:
        raise UserFacingError("not_found", "No such instance.", "Check the instance id.", status=404)
    return instance


@bp.post("/instances")
@login_required
def create_instance():
    body = _json_body()
    instance = instances.request_instance(dbs(), current(), secret=settings().secret_key,
                                          subdomain=body.get("subdomain"), tier=body.get("tier"),
                                          region=body.get("region"), ip=client_ip())
    dbs().commit()
    response = jsonify(instance=instance_json(instance))
    response.headers["Location"] = url_for("api.get_instance", instance_id=instance.id)
    return response, 202


@bp.get("/instances/<instance_id>")
@login_required
def get_instance(instance_id: str):
    return jsonify(instance=instance_json(owned_instance(instance_id)))
