"""An operator pins an instance to an OpenClaw version: rollouts leave it alone (except one
for `all` or that names it) until it is unpinned. The dashboard shows the pin."""

from __future__ import annotations

from sqlalchemy.orm import Session

from clawdet.errors import UserFacingError
from clawdet.instances import lifecycle
from clawdet.rollouts.plan import release_image
from db import audit
from db.models import Instance
from programs import openclaw


def pin(
    session: Session, actor: str, instance: Instance, version: str | None = None, *, by_digest: bool
) -> str:
    """Pin to `version` (moving the instance there, health-checked like any update), or to
    the version it has now. Returns the image it is pinned to. `by_digest`: see release_image."""
    if instance.rollout_id is not None:
        raise UserFacingError(
            "in_rollout",
            f"{instance.subdomain} is being updated by rollout {instance.rollout_id}.",
            "Wait for its gate, or abort the rollout, then pin it.",
            status=409,
        )
    try:
        image = (
            release_image(version, by_digest=by_digest)
            if version
            else instance.desired_image or instance.openclaw_image
        )
    except ValueError as exc:
        raise UserFacingError(
            "invalid_version", str(exc), "Give a version such as 2026.9.6 (with its digest on real servers)."
        ) from exc
    if image is None:
        raise UserFacingError(
            "no_version", f"{instance.subdomain} has no version yet.", "Give one: --version 2026.9.6."
        )
    instance.image_pinned = True
    if image != instance.desired_image:
        instance.desired_image = image
        lifecycle.desired_changed(
            session,
            instance,
            "requested",
            f"Pinned to OpenClaw {openclaw.version_of(image)} by the operators",
            waiting="Waiting for a worker",
        )
    audit.record(
        session, "instance.pin", actor=actor, target_type="instance", target_id=instance.id, image=image
    )
    return image


def unpin(session: Session, actor: str, instance: Instance) -> None:
    instance.image_pinned = False
    audit.record(session, "instance.unpin", actor=actor, target_type="instance", target_id=instance.id)
