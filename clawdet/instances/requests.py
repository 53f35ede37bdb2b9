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
from programs.tiers import DEFAULT_LOCATION, LOCATIONS, TIERS

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
    subdomain: str | None = None,
    tier: str | None = None,
    region: str | None = None,
    ip: str | None = None,
) -> Instance:
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
        credentials.next_llm_key(instance)
        credentials.next_gateway_token(instance)
        instance.llm_key_hash = instance.llm_key_previous_hash = None  # the worker issues the new one
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


def request_destroy(
    session: Session, user: User | str, instance: Instance, ip: str | None = None
) -> Instance:
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
    """`reboot` reboots the server; `rebuild` replaces it with a fresh one (the data volume stays)."""
    if action not in (Action.REBOOT, Action.REBUILD):
        raise UserFacingError(
            "unknown_action", f"Unknown action {action!r}.", "Use reboot or rebuild.", status=404
        )
    _require_settled(instance, DesiredState.RUNNING)
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


def request_restart(
    session: Session, user: User | str, instance: Instance, ip: str | None = None
) -> Instance:
    """Restart the containers (not the server): the app layer is deployed again as it is."""
    _require_settled(instance, DesiredState.RUNNING)
    instance.restarts += 1
    return _changed(session, user, instance, "restart", "Restart of the gateway requested", ip)


def request_token_rotation(
    session: Session, user: User | str, instance: Instance, ip: str | None = None
) -> Instance:
    """A new gateway token, pushed in place; the old one stops working once the new one is live."""
    _require_settled(instance, DesiredState.RUNNING)
    credentials.next_gateway_token(instance)
    return _changed(
        session,
        user,
        instance,
        "token_rotate",
        f"Gateway token rotated to version {instance.gateway_token_version}",
        ip,
        version=instance.gateway_token_version,
    )


def request_pause(session: Session, user: User | str, instance: Instance, ip: str | None = None) -> Instance:
    """Delete the server, keep the volume and firewall; the name shows the paused page."""
    _require_settled(instance, DesiredState.RUNNING)
    return _changed(
        session,
        user,
        instance,
        "pause",
        "Pause requested: your data stays on its volume",
        ip,
        desired=DesiredState.PAUSED,
    )


def request_resume(session: Session, user: User | str, instance: Instance, ip: str | None = None) -> Instance:
    """A new server from the same volume."""
    _require_settled(instance, DesiredState.PAUSED)
    return _changed(session, user, instance, "resume", "Resume requested", ip, desired=DesiredState.RUNNING)


def request_tier_change(
    session: Session, user: User, instance: Instance, tier: str, ip: str | None = None
) -> Instance:
    """Resize in place: another server type (same server), a larger volume. A volume never
    shrinks, so a tier with a smaller one is refused."""
    allowed = tiers_for(instance.user)  # the owner's plan, whoever asks
    if tier not in allowed:
        raise UserFacingError(
            "invalid_tier",
            f"{tier!r} is not a tier you can choose.",
            f"Choose one of: {', '.join(allowed)}.",
            status=422,
        )
    _require_settled(instance, DesiredState.RUNNING)
    if tier == instance.tier:
        raise UserFacingError(
            "no_change", f"Your instance is on the {tier} tier already.", "Choose another tier.", status=409
        )
    current_gb, wanted_gb = TIERS[instance.tier].volume_gb, TIERS[tier].volume_gb
    if wanted_gb < current_gb:
        raise UserFacingError(
            "volume_cannot_shrink",
            f"Your data volume is {current_gb} GB and the {tier} tier's is {wanted_gb} GB; "
            "a volume can grow but never shrink.",
            "Stay on your tier, or export your data and create a new instance on the smaller one.",
            status=409,
        )
    previous, instance.tier = instance.tier, tier
    return _changed(
        session, user, instance, "tier_change", f"Tier change from {previous} to {tier} requested", ip
    )


def _require_settled(instance: Instance, desired: DesiredState) -> None:
    if instance.desired_state != desired.value:
        state = "paused" if instance.desired_state == DesiredState.PAUSED.value else instance.desired_state
        raise UserFacingError(
            "wrong_state",
            f"Your instance is {state}; this needs it {desired.value}.",
            "Resume it first." if state == "paused" else "Create a new instance.",
            status=409,
        )
    settled = (InstanceStatus.READY.value, InstanceStatus.PAUSED.value, InstanceStatus.FAILED.value)
    if instance.status not in settled or in_flight(instance):
        raise _busy()


def _changed(
    session: Session,
    user: User | str,
    instance: Instance,
    what: str,
    message: str,
    ip: str | None,
    *,
    desired: DesiredState | None = None,
    **details,
) -> Instance:
    lifecycle.desired_changed(
        session, instance, "requested", message, desired=desired, waiting="Waiting for a worker"
    )
    audit.record(
        session,
        f"instance.{what}",
        actor=user,
        target_type="instance",
        target_id=instance.id,
        ip=ip,
        **details,
    )
    return instance


def request_named(
    session: Session, user: User, instance: Instance, name: str, ip: str | None = None
) -> Instance:
    """One entry for the API, the dashboard, the admin console and the CLI: `name` is one of
    NAMED_CHANGES (a tier change and a key rotation take an argument, see their own functions)."""
    changes = {
        "restart": request_restart,
        "pause": request_pause,
        "resume": request_resume,
        "rotate-token": request_token_rotation,
        "destroy": request_destroy,
        "reboot": lambda s, u, i, a: request_action(s, u, i, Action.REBOOT, a),
        "rebuild": lambda s, u, i, a: request_action(s, u, i, Action.REBUILD, a),
    }
    if name not in changes:
        raise UserFacingError(
            "unknown_action",
            f"Unknown action {name!r}.",
            f"Use one of: {', '.join(NAMED_CHANGES)}.",
            status=404,
        )
    return changes[name](session, user, instance, ip)


NAMED_CHANGES = ("restart", "pause", "resume", "rotate-token", "reboot", "rebuild", "destroy")


def route_choice(names: tuple[str, ...] = NAMED_CHANGES) -> str:
    """A Flask route converter that matches one of `names`: `<{route_choice()}:change>`."""
    return "any(" + ", ".join(repr(name) for name in names) + ")"
