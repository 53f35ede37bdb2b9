"""The admin console: users, instances, the work queue, rollouts, fleet health, usage and cost.

Every route is for admins only (anyone else gets 404, so the console's existence is not
advertised); every action is written to the audit log with the admin as the actor.

Disabling a user ends their sessions (session_version bump) and destroys their instances
(desired_state=destroyed). There is no "stopped" state on purpose: Hetzner bills a powered-off
server like a running one, so only destroying stops the cost and cuts off the gateway; the
customer's account stays, and after re-enabling they can create a new instance.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select

from clawdet.accounts import free_beta
from clawdet.backups import nightly
from clawdet.backups import service as backup_service
from clawdet.errors import UserFacingError
from clawdet.instances import leases, lifecycle, rotation
from clawdet.instances import requests as instances
from clawdet.instances.lifecycle import Action, DesiredState, Health, InstanceStatus
from clawdet.ops import costs, warm_pool
from clawdet.rollouts import FINISHED, MemberState, RolloutStatus, driver
from db import audit
from db.models import Instance, InstanceEvent, OutboxEmail, PaymentMethod, Role, Rollout, User, utcnow
from webapp import dbs, settings
from webapp.auth import client_ip, current
from webapp.security import safe_next

bp = Blueprint("admin", __name__, url_prefix="/admin")
PAGE = 50


@bp.before_request
def _admins_only():
    if not current_user.is_authenticated or not current().is_admin:
        abort(404)


def _back(default: str):
    return redirect(safe_next(request.form.get("next"), default))


def _user(user_id: str) -> User:
    user = dbs().get(User, user_id)
    if user is None:
        abort(404)
    return user


def _instance(instance_id: str) -> Instance:
    instance = dbs().get(Instance, instance_id)
    if instance is None:
        abort(404)
    return instance


def _record(action: str, target_type: str, target_id: str, **details) -> None:
    audit.record(
        dbs(),
        action,
        actor=current(),
        target_type=target_type,
        target_id=target_id,
        ip=client_ip(),
        **details,
    )


# -- overview ---------------------------------------------------------------------------------


@bp.get("/")
def overview():
    session = dbs()
    by_status = dict(session.execute(select(Instance.status, func.count()).group_by(Instance.status)).all())
    running = (
        select(func.count())
        .select_from(Instance)
        .where(
            Instance.desired_state == DesiredState.RUNNING.value,
            Instance.status == InstanceStatus.READY.value,
        )
    )
    health = dict(
        session.execute(
            select(Instance.health, func.count())
            .where(
                Instance.desired_state == DesiredState.RUNNING.value,
                Instance.status == InstanceStatus.READY.value,
            )
            .group_by(Instance.health)
        ).all()
    )
    unhealthy = session.scalars(
        select(Instance)
        .where(
            Instance.health == Health.UNHEALTHY.value, Instance.desired_state == DesiredState.RUNNING.value
        )
        .order_by(Instance.health_changed_at.desc())
        .limit(20)
    ).all()
    outbox = dict(
        session.execute(select(OutboxEmail.status, func.count()).group_by(OutboxEmail.status)).all()
    )
    return render_template(
        "admin/overview.html",
        by_status=by_status,
        ready=session.scalar(running),
        health=health,
        unhealthy=unhealthy,
        outbox=outbox,
        queue=queue_summary(),
        beta_users=free_beta.free_beta_users(session),
        beta_cap=settings().free_beta_cap,
        beta_full=free_beta.free_beta_full(session, settings()),
        users=session.scalar(select(func.count()).select_from(User)),
        report=costs.month_report(session),
        halted=halted_rollouts(),
        backup_health=nightly.backup_health(session),
        pool=warm_pool.listing(session, settings().warm_pool),
    )


def queue_summary() -> dict[str, int]:
    now = utcnow()
    session = dbs()
    count = lambda *where: session.scalar(select(func.count()).select_from(Instance).where(*where)) or 0
    return {
        "pending": count(leases.needs_work(), Instance.lease_owner.is_(None)),
        "leased": count(Instance.lease_owner.is_not(None), Instance.lease_expires_at > now),
        "waiting_retry": count(leases.needs_work(), Instance.next_attempt_at > now),
        "failed": count(Instance.status == InstanceStatus.FAILED.value),
    }


# -- users ------------------------------------------------------------------------------------


@bp.get("/users")
def users():
    q = (request.args.get("q") or "").strip()
    query = select(User).order_by(User.created_at.desc()).limit(PAGE)
    if q:
        like = f"%{q.lower()}%"
        query = query.where(
            or_(
                func.lower(User.email).like(like),
                func.lower(User.name).like(like),
                func.lower(User.x_username).like(like),
                User.id == q,
            )
        )
    return render_template(
        "admin/users.html",
        users=dbs().scalars(query).all(),
        q=q,
        payment_methods=[m.value for m in PaymentMethod],
    )


@bp.post("/users/<user_id>/disable")
def disable_user(user_id: str):
    user = _user(user_id)
    if user.id == current().id:
        raise UserFacingError(
            "cannot_disable_self", "You cannot disable your own account.", "Ask another admin.", status=409
        )
    user.disabled = True
    user.session_version += 1
    destroyed = []
    for instance in user.instances:
        if (
            instance.desired_state != DesiredState.DESTROYED.value
            and instance.status != InstanceStatus.DESTROYED.value
        ):
            instances.request_destroy(dbs(), current(), instance, client_ip())
            destroyed.append(instance.id)
    _record("admin.user.disable", "user", user.id, instances_destroyed=destroyed)
    dbs().commit()
    flash(f"{user.email or user.id} is disabled; sessions ended; {len(destroyed)} instance(s) being removed.")
    return _back(url_for("admin.users"))


@bp.post("/users/<user_id>/enable")
def enable_user(user_id: str):
    user = _user(user_id)
    user.disabled = False
    _record("admin.user.enable", "user", user.id)
    dbs().commit()
    flash(f"{user.email or user.id} is enabled again.")
    return _back(url_for("admin.users"))


@bp.post("/users/<user_id>/mark-paid")
def mark_paid(user_id: str):
    user = _user(user_id)
    method = request.form.get("payment_method") or PaymentMethod.STRIPE.value
    if method not in {m.value for m in PaymentMethod}:
        raise UserFacingError(
            "invalid_payment_method",
            f"Unknown payment method {method!r}.",
            f"Choose one of: {', '.join(m.value for m in PaymentMethod)}.",
        )
    user.paid, user.payment_method, user.paid_at = True, method, utcnow()
    _record("admin.user.mark_paid", "user", user.id, payment_method=method)
    dbs().commit()
    flash(f"{user.email or user.id} is marked paid ({method}).")
    return _back(url_for("admin.users"))


@bp.post("/users/<user_id>/make-admin")
def make_admin(user_id: str):
    user = _user(user_id)
    user.role = Role.ADMIN.value
    _record("admin.user.make_admin", "user", user.id)
    dbs().commit()
    flash(f"{user.email or user.id} is an admin.")
    return _back(url_for("admin.users"))


# -- instances --------------------------------------------------------------------------------


@bp.get("/instances")
def instance_list():
    status = request.args.get("status") or ""
    query = select(Instance).order_by(Instance.updated_at.desc()).limit(PAGE)
    if status:
        query = query.where(Instance.status == status)
    return render_template(
        "admin/instances.html",
        instances=dbs().scalars(query).all(),
        status=status,
        statuses=[s.value for s in InstanceStatus],
    )


@bp.get("/instances/<instance_id>")
def instance_detail(instance_id: str):
    instance = _instance(instance_id)
    events = (
        dbs()
        .scalars(
            select(InstanceEvent)
            .where(InstanceEvent.instance_id == instance.id)
            .order_by(InstanceEvent.id.desc())
            .limit(100)
        )
        .all()
    )
    return render_template(
        "admin/instance.html",
        instance=instance,
        events=events,
        in_flight=lifecycle.in_flight(instance),
        backups=backup_service.listed_in(dbs(), instance.id),
    )


@bp.post("/instances/<instance_id>/reconcile")
def force_reconcile(instance_id: str):
    """Converge now with a refresh (repair), whatever its state: skips any backoff wait."""
    instance = _instance(instance_id)
    if (
        instance.lease_owner is not None
        and instance.lease_expires_at
        and instance.lease_expires_at > utcnow()
    ):
        raise UserFacingError(
            "operation_in_flight",
            "A worker is working on this instance right now.",
            "Wait until it finishes, then try again.",
            status=409,
        )
    lifecycle.action_requested(dbs(), instance, Action.REPAIR, "Reconcile requested by an admin")
    _record("admin.instance.reconcile", "instance", instance.id)
    dbs().commit()
    flash(f"{instance.stack_name}: reconcile queued.")
    return _back(url_for("admin.instance_detail", instance_id=instance.id))


@bp.post(f"/instances/<instance_id>/<{instances.route_choice()}:change>")
def instance_change(instance_id: str, change: str):
    instance = _instance(instance_id)
    instances.request_named(dbs(), current(), instance, change, client_ip())
    _record(f"admin.instance.{change}", "instance", instance.id)
    dbs().commit()
    flash(f"{instance.stack_name}: {change} queued.")
    return _back(url_for("admin.instance_detail", instance_id=instance.id))


@bp.post("/instances/<instance_id>/rotate-key")
def rotate_key(instance_id: str):
    instance = _instance(instance_id)
    rotation.rotate_llm_key(dbs(), instance, actor=current(), ip=client_ip())
    dbs().commit()
    flash(f"{instance.stack_name}: LLM key rotated; the server gets it in place.")
    return _back(url_for("admin.instance_detail", instance_id=instance.id))


@bp.post("/instances/<instance_id>/tier")
def change_tier(instance_id: str):
    instance = _instance(instance_id)
    instances.request_tier_change(dbs(), current(), instance, request.form.get("tier", ""), client_ip())
    _record("admin.instance.tier", "instance", instance.id, tier=instance.tier)
    dbs().commit()
    flash(f"{instance.stack_name}: tier change to {instance.tier} queued.")
    return _back(url_for("admin.instance_detail", instance_id=instance.id))


# -- rollouts ---------------------------------------------------------------------------------

# A wave's bar, left to right: what is done first.
WAVE_STATES = (*FINISHED, MemberState.UPDATING.value, MemberState.PENDING.value, MemberState.SKIPPED.value)
ROLLOUT_ACTIONS = {
    "start": (driver.start, "started; the workers update the canary first"),
    "pause": (driver.pause, "paused: nothing new starts, what is updating finishes"),
    "resume": (driver.resume, "running again"),
    "abort": (driver.abort, "aborted: nothing more moves forward, what passed stays"),
}


def halted_rollouts() -> list[Rollout]:
    return list(
        dbs().scalars(
            select(Rollout)
            .where(Rollout.status == RolloutStatus.HALTED.value)
            .order_by(Rollout.created_at.desc())
        )
    )


@bp.get("/rollouts")
def rollout_list():
    rollouts = dbs().scalars(select(Rollout).order_by(Rollout.created_at.desc()).limit(PAGE)).all()
    return render_template("admin/rollouts.html", rollouts=rollouts, halted=halted_rollouts())


@bp.get("/rollouts/<rollout_id>")
def rollout_detail(rollout_id: str):
    rollout = dbs().get(Rollout, rollout_id)
    if rollout is None:
        abort(404)
    return render_template(
        "admin/rollout.html",
        rollout=rollout,
        waves=driver.progress(rollout),
        states=WAVE_STATES,
        members=sorted(rollout.members, key=lambda m: (m.wave < 0, m.wave, m.stack_name)),
    )


@bp.post(f"/rollouts/<rollout_id>/<{instances.route_choice(tuple(ROLLOUT_ACTIONS))}:action>")
def rollout_action(rollout_id: str, action: str):
    """The driver audits the action; a refused one (the wrong state, a changed fleet) is a flash."""
    change, done = ROLLOUT_ACTIONS[action]
    try:
        change(dbs(), rollout_id, current())
    except UserFacingError as exc:
        dbs().rollback()
        if exc.status == 404:
            raise
        flash(f"{exc.message} {exc.action}", "error")
    else:
        dbs().commit()
        flash(f"Rollout {rollout_id} {done}.")
    return _back(url_for("admin.rollout_detail", rollout_id=rollout_id))


# -- the work queue, usage --------------------------------------------------------------------


@bp.get("/queue")
def queue():
    session = dbs()
    now = utcnow()
    rows = session.scalars(
        select(Instance)
        .where(
            or_(
                leases.needs_work(),
                Instance.lease_owner.is_not(None),
                Instance.status == InstanceStatus.FAILED.value,
            )
        )
        .order_by(Instance.next_attempt_at.is_not(None), Instance.next_attempt_at, Instance.updated_at)
        .limit(200)
    ).all()
    stale = now - timedelta(minutes=15)
    return render_template(
        "admin/queue.html",
        rows=rows,
        now=now,
        stale=stale,
        summary=queue_summary(),
        outbox=session.scalars(
            select(OutboxEmail).where(OutboxEmail.status != "sent").order_by(OutboxEmail.id.desc()).limit(50)
        ).all(),
    )


@bp.get("/usage")
def usage():
    return render_template("admin/usage.html", report=costs.month_report(dbs()))
