"""Rotating an instance's LLM proxy key: a new version and a new generation, so the worker
derives the new key, records its hash and pushes it to the server; the old key works until
then."""

from __future__ import annotations

from sqlalchemy.orm import Session

from clawdet.errors import UserFacingError
from clawdet.instances import credentials, lifecycle
from db import audit
from db.models import Instance, User


def rotate_llm_key(session: Session, instance: Instance, *, actor: User, ip: str | None = None) -> None:
    if instance.desired_state == lifecycle.DesiredState.DESTROYED.value:
        raise UserFacingError(
            "instance_destroyed",
            "This instance is being destroyed.",
            "Create a new instance first.",
            status=409,
        )
    credentials.next_llm_key(instance)
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
