"""Rotating an instance's LLM proxy key: a new version, a new hash, and a new generation so the
reconciler rewrites the stack config and the server receives the new key."""

from __future__ import annotations

from sqlalchemy.orm import Session

from clawdet.errors import UserFacingError
from clawdet.instances import credentials, lifecycle
from db import audit
from db.models import Instance, User


def rotate_llm_key(
    session: Session, instance: Instance, *, secret: str, actor: User, ip: str | None = None
) -> str:
    """Returns the new key's plaintext: show it to the owner once, store it nowhere."""
    if instance.desired_state == lifecycle.DesiredState.DESTROYED.value:
        raise UserFacingError(
            "instance_destroyed",
            "This instance is being destroyed.",
            "Create a new instance first.",
            status=409,
        )
    instance.llm_key_version += 1
    key = credentials.assign_llm_key(instance, secret)
    lifecycle.desired_changed(
        session, instance, "llm_key_rotated", f"LLM key rotated to version {instance.llm_key_version}"
    )
    audit.record(
        session,
        "instance.llm_key_rotate",
        actor=actor,
        target_type="instance",
        target_id=instance.id,
        ip=ip,
        version=instance.llm_key_version,
    )
    return key
