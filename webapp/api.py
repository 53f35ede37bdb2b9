"""JSON API: health and the customer's instances."""

from __future__ import annotations

from flask import Blueprint, jsonify, url_for
from flask_login import login_required

from clawdet.errors import UserFacingError
from clawdet.instances import lifecycle, progress, rotation
from clawdet.instances import requests as instances
from db.models import Instance
from programs import openclaw
from webapp import dbs
from webapp.auth import client_ip, current
from webapp.bodies import json_body

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/health")
def health():
    """The database, the Pulumi state backend and the cloud APIs; 503 names what is down."""
    from flask import current_app

    from webapp.operations import platform_health_response

    return platform_health_response(current_app)


def instance_json(instance: Instance) -> dict:
    return {
        "id": instance.id,
        "subdomain": instance.subdomain,
        "tier": instance.tier,
        "region": instance.region,
        "desiredState": instance.desired_state,
        "status": instance.status,
        "statusMessage": instance.status_message,
        "generation": instance.generation,
        "observedGeneration": instance.observed_generation,
        "url": instance.url,
        "ipv4": instance.ipv4,
        "serverId": instance.server_id,
        "volumeId": instance.volume_id,
        "openclawVersion": openclaw.version_of(instance.openclaw_image),
        "openclawPinned": instance.image_pinned,
        "configHash": instance.config_hash,
        "health": instance.health,
        "inFlight": lifecycle.in_flight(instance),
        "attempts": instance.attempts,
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
    body = json_body(subdomain=str, tier=str, region=str)
    instance = instances.request_instance(
        dbs(),
        current(),
        subdomain=body.get("subdomain"),
        tier=body.get("tier"),
        region=body.get("region"),
        ip=client_ip(),
    )
    dbs().commit()
    response = jsonify(instance=instance_json(instance))
    response.headers["Location"] = url_for("api.get_instance", instance_id=instance.id)
    return response, 202


@bp.get("/instances/<instance_id>")
@login_required
def get_instance(instance_id: str):
    return jsonify(instance=instance_json(owned_instance(instance_id)))


def _accepted(instance: Instance):
    dbs().commit()
    response = jsonify(instance=instance_json(instance), events=progress.events_path(instance.id))
    response.headers["Location"] = url_for("api.get_instance", instance_id=instance.id)
    return response, 202


@bp.delete("/instances/<instance_id>")
@login_required
def destroy_instance(instance_id: str):
    return _accepted(instances.request_destroy(dbs(), current(), owned_instance(instance_id), client_ip()))


@bp.patch("/instances/<instance_id>")
@login_required
def change_instance(instance_id: str):
    """Only the tier changes after creation (in place: server type and volume size)."""
    body = json_body(tier=str)
    if "tier" not in body:
        raise UserFacingError(
            "nothing_to_change", "Nothing to change.", 'Send {"tier": "pro"}, for example.', status=422
        )
    instance = owned_instance(instance_id)
    return _accepted(instances.request_tier_change(dbs(), current(), instance, body["tier"], client_ip()))


API_CHANGES = tuple(name for name in instances.NAMED_CHANGES if name != "destroy")  # that is DELETE


@bp.post(f"/instances/<instance_id>/<{instances.route_choice(API_CHANGES)}:change>")
@login_required
def instance_change(instance_id: str, change: str):
    """Each a change of the desired state, converged by the reconciler (in place where it can)."""
    instance = owned_instance(instance_id)
    return _accepted(instances.request_named(dbs(), current(), instance, change, client_ip()))


@bp.post("/instances/<instance_id>/rotate-key")
@login_required
def rotate_key(instance_id: str):
    """A new LLM proxy key for the gateway, pushed in place; the old one works until then."""
    instance = owned_instance(instance_id)
    rotation.rotate_llm_key(dbs(), instance, actor=current(), ip=client_ip())
    return _accepted(instance)
