"""Recording what a customer wants: the desired instance. Nothing slow happens here; the
reconciler picks the row up."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clawdet.errors import UserFacingError
from clawdet.instances import credentials, lifecycle
from clawdet.instances.lifecycle import Action, DesiredState, InstanceStatus, in_flight
from db import audit
from db.models import Instance, PaymentMethod, User
from programs.naming import validate_subdomain
from programs.tiers import DEFAULT_LOCATION, LOCATIONS

# Which tiers each plan may choose; the free beta gets the free tier.
PLAN_TIERS = {
    PaymentMethod.FREE_BETA.value: ("free",),
    PaymentMethod.STRIPE.value: ("free", "pro", "enterprise"),
    PaymentMethod.PAYPAL.value: ("free", "pro", "enterprise"),
}


def tiers_for(user: User) -> tuple[str, ...]:
    return PLAN_TIERS.get(user.payment_method or "", ("free",)) if user.paid else ()


def active_instance(session: Session, user: User) -> Instance | None:
    return session.scalar(
        select(Instance)
        .where(Instance.user_id == user.id, Instance.status != InstanceStatus.DESTROYED.value)
        .order_by(Instance.created_at.desc())
    )


def request_instance(
    session: Session,
    user: User,
    *,
    secret: str,
    subdomain: str | None = None,
    tier: str | None = None,
    region: str | None = None,
    ip: str | None = None,
) -> Instance:
    """`secret` is the platform secret the instance's credentials are derived from."""
    if not user.paid:
        raise UserFacingError(
            "payment_required",
            "Your plan does not include an instance yet.",
            "Choose a plan first.",
            status=402,
        )
    if not user.details_complete:
        raise UserFacingError(
            "details_required",
            "Confirm your email and accept the terms first.",
            "Finish the details step.",
            status=403,
        )
    # One request per user at a time (PostgreSQL); SQLite serialises writers anyway.
    session.execute(select(User.id).where(User.id == user.id).with_for_update())
    if active_instance(session, user) is not None:
        raise _instance_exists()
    tier = tier or tiers_for(user)[0]
    if tier not in tiers_for(user):
        raise UserFacingError(
            "tier_not_in_plan",
            f"The {tier!r} tier is not part of your plan.",
            f"Choose one of: {', '.join(tiers_for(user))}.",
            status=402,
            field="tier",
        )
    region = region or DEFAULT_LOCATION
    if region not in LOCATIONS:
        raise UserFacingError(
            "invalid_region",
            f"Unknown region {region!r}.",
            f"Choose one of: {', '.join(LOCATIONS)}.",
            field="region",
        )
    name = _chosen_subdomain(subdomain) if subdomain else derive_subdomain(session, user)
    previous = session.scalar(select(Instance).where(Instance.subdomain == name))
    if previous is not None and not (
        previous.user_id == user.id and previous.status == InstanceStatus.DESTROYED.value
    ):
        raise _subdomain_taken(name)
    instance = previous or Instance(user_id=user.id, subdomain=name, stack_name=name, generation=1)
    instance.tier, instance.region = tier, region
    if previous is not None:  # a new life under an old name: nothing of the old one carries over
        instance.ready_at = None
        instance.llm_key_version += 1
        instance.gateway_token_version += 1
    session.add(instance)
    try:
        session.flush()
        lifecycle.requested(
            session, instance, f"Instance {name} requested ({tier}, {region})", renewed=previous is not None
        )
        session.flush()  # where a request that raced this one meets the one-active-instance index
    except IntegrityError as exc:
        session.rollback()
        if active_instance(session, user) is not None:
            raise _instance_exists() from exc
        raise _subdomain_taken(name) from exc
    credentials.assign_llm_key(instance, secret)
    audit.record(
        session,
        "instance.create",
        actor=user,
        target_type="instance",
        target_id=instance.id,
        ip=ip,
        subdomain=name,
        tier=tier,
        region=region,
    )
    return instance


def _chosen_subdomain(raw: str) -> str:
    try:
        return validate_subdomain(raw.strip().lower())
    except ValueError as exc:
        raise UserFacingError(
            "invalid_subdomain",
            str(exc),
            "Use lowercase letters, digits and hyphens, e.g. alice or my-claw.",
            field="subdomain",
        ) from exc


def _instance_exists() -> UserFacingError:
    return UserFacingError(
        "instance_exists",
        "You already have an instance.",
        "Open it from your dashboard, or destroy it before creating another.",
        status=409,
    )


def _subdomain_taken(name: str) -> UserFacingError:
    return UserFacingError(
        "subdomain_taken",
        f"The name {name!r} is already taken.",
        "Choose another name.",
        status=409,
        field="subdomain",
    )


def derive_subdomain(session: Session, user: User) -> str:
    """A readable, free name from the user's handle, name or email."""
    source = user.x_username or user.name or (user.email or "").split("@")[0] or "claw"
    base = re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")[:24].strip("-") or "claw"
    for suffix in ["", *(f"-{n}" for n in range(2, 50))]:
        candidate = f"{base}{suffix}"
        try:
            validate_subdomain(candidate)
        except ValueError:
            continue
        if session.scalar(select(Instance.id).where(Instance.subdomain == candidate)) is None:
            return candidate
    import secrets

    return f"claw-{secrets.token_hex(3)}"


def _busy() -> UserFacingError:
    return UserFacingError(
        "operation_in_flight",
        "Your instance is busy with another operation.",
        "Wait until it finishes, then try again.",
        status=409,
    )


def request_destroy(session: Session, user: User, instance: Instance, ip: str | None = None) -> Instance:
    if instance.desired_state == DesiredState.DESTROYED.value:
        raise UserFacingError(
            "already_destroyed",
            "This instance is already being removed.",
            "Wait for it to finish.",
            status=409,
        )
    lifecycle.destroy_requested(session, instance)
    audit.record(
        session, "instance.destroy", actor=user, target_type="instance", target_id=instance.id, ip=ip
    )
    return instance


def request_action(
    session: Session, user: User, instance: Instance, action: str, ip: str | None = None
) -> Instance:
    """`restart` reboots the server; `rebuild` replaces it with a fresh one."""
    if action not in (Action.RESTART, Action.REBUILD):
        raise UserFacingError(
            "unknown_action", f"Unknown action {action!r}.", "Use restart or rebuild.", status=404
        )
    if (
        instance.desired_state != DesiredState.RUNNING.value
        or instance.status not in (InstanceStatus.READY.value, InstanceStatus.FAILED.value)
        or in_flight(instance)
    ):
        raise _busy()
    lifecycle.action_requested(
        session,
        instance,
        Action(action),
        f"{action.capitalize()} requested",
        waiting=f"Waiting for a worker to {action} it",
    )
    audit.record(
        session, f"instance.{action}", actor=user, target_type="instance", target_id=instance.id, ip=ip
    )
    return instance
