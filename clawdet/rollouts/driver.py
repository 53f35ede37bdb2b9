"""A rollout's life after its plan: `start` (the approval, refused when the fleet changed since
the plan), `pause`, `resume`, `abort`, and `advance`, the step every worker runs every few
seconds. `advance` only writes desired state: it moves a wave's instances to the new image
(`desired_image`, a new generation) and the reconcilers update them under their leases; their
gate's outcome comes back through clawdet.rollouts.outcome."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clawdet.errors import UserFacingError
from clawdet.instances import lifecycle
from clawdet.instances.lifecycle import Health
from clawdet.rollouts import ACTIVE, FINISHED, MemberState, RolloutStatus
from clawdet.rollouts.cohort import Cohort, busy, fingerprint, not_updatable
from clawdet.rollouts.waves import CANARY, over_budget
from db import audit
from db.engine import Database
from db.models import Instance, Rollout, RolloutInstance, User, utcnow
from programs import openclaw

log = logging.getLogger(__name__)

HaltNotifier = Callable[[Session, Rollout], None]


def _rollout(session: Session, rollout_id: str) -> Rollout:
    """The rollout, its row locked for the rest of the transaction: an UPDATE first, which is a
    row lock on PostgreSQL and takes SQLite's write lock before anything is read (a SELECT ...
    FOR UPDATE is a no-op on SQLite), so two steps, or a step and an abort, never interleave."""
    locked = session.execute(
        update(Rollout)
        .where(Rollout.id == rollout_id)
        .values(status=Rollout.status)
        .execution_options(synchronize_session=False)
    ).rowcount
    rollout = session.get(Rollout, rollout_id, populate_existing=True) if locked else None
    if rollout is None:
        raise UserFacingError(
            "not_found", f"No rollout is called {rollout_id!r}.", "See `clawdet rollout status`.", status=404
        )
    return rollout


def _wrong_state(rollout: Rollout, action: str, allowed: tuple[str, ...]) -> UserFacingError:
    return UserFacingError(
        "wrong_state",
        f"Rollout {rollout.id} is {rollout.status}; {action} needs it {' or '.join(allowed)}.",
        "Look at its status (the admin console or `clawdet rollout status`) first.",
        status=409,
    )


def start(session: Session, rollout_id: str, actor: User | str) -> Rollout:
    """Approve a plan: it runs only if every instance of its cohort is as the plan saw it, and
    no other rollout is under way (two would move the same instances back and forth)."""
    rollout = _rollout(session, rollout_id)
    if rollout.status != RolloutStatus.PLANNED.value:
        raise _wrong_state(rollout, "start", (RolloutStatus.PLANNED.value,))
    other = session.scalar(select(Rollout.id).where(Rollout.status.in_(ACTIVE), Rollout.id != rollout.id))
    if other is not None:
        raise UserFacingError(
            "another_rollout",
            f"Rollout {other} is under way (running or paused).",
            "Let it finish, or abort it, then make a new plan.",
            status=409,
        )
    changes = fleet_changes(session, rollout)
    if changes:
        raise UserFacingError(
            "fleet_changed",
            f"The fleet changed since plan {rollout.id} was made: {'; '.join(changes[:10])}.",
            "Make a new plan (`clawdet rollout plan`) and start that one.",
            status=409,
        )
    rollout.status, rollout.started_at = RolloutStatus.RUNNING.value, utcnow()
    audit.record(session, "rollout.start", actor=actor, target_type="rollout", target_id=rollout.id)
    return rollout


def fleet_changes(session: Session, rollout: Rollout) -> list[str]:
    planned = {m.instance_id: m for m in rollout.members}
    try:
        now = {i.id: i for i in Cohort.parse(rollout.cohort).members(session)}
    except ValueError as exc:
        return [str(exc)]
    changes = [f"new: {now[i].stack_name}" for i in sorted(set(now) - set(planned))]
    changes += [f"gone: {planned[i].stack_name}" for i in sorted(set(planned) - set(now))]
    changes += [
        f"changed: {planned[i].stack_name}"
        for i in sorted(set(now) & set(planned))
        if fingerprint(now[i]) != planned[i].fingerprint
    ]
    return changes


def pause(session: Session, rollout_id: str, actor: User | str) -> Rollout:
    """Start nothing new; an update a worker has begun finishes behind its gate, one still
    queued goes back to waiting (and to its old image) until `resume`."""
    rollout = _move(session, rollout_id, actor, "pause", (RolloutStatus.RUNNING,), RolloutStatus.PAUSED)
    _stop_queued(session, rollout, MemberState.PENDING, "waiting: the rollout is paused")
    return rollout


def resume(session: Session, rollout_id: str, actor: User | str) -> Rollout:
    return _move(session, rollout_id, actor, "resume", (RolloutStatus.PAUSED,), RolloutStatus.RUNNING)


def abort(session: Session, rollout_id: str, actor: User | str) -> Rollout:
    """Nothing more moves forward; an update a worker has begun finishes behind its gate (and
    rolls back if it fails); what passed stays."""
    rollout = _move(
        session,
        rollout_id,
        actor,
        "abort",
        (RolloutStatus.PLANNED, RolloutStatus.RUNNING, RolloutStatus.PAUSED, RolloutStatus.HALTED),
        RolloutStatus.ABORTED,
    )
    _stop_queued(
        session, rollout, MemberState.SKIPPED, "not updated: the rollout was aborted", skip_pending=True
    )
    rollout.finished_at = utcnow()
    return rollout


def _move(
    session: Session,
    rollout_id: str,
    actor: User | str,
    action: str,
    allowed: tuple[RolloutStatus, ...],
    to: RolloutStatus,
) -> Rollout:
    rollout = _rollout(session, rollout_id)
    if rollout.status not in allowed:
        raise _wrong_state(rollout, action, tuple(a.value for a in allowed))
    rollout.status = to.value
    audit.record(session, f"rollout.{action}", actor=actor, target_type="rollout", target_id=rollout.id)
    return rollout


# -- advancing --------------------------------------------------------------------------------


def advance(database: Database, on_halt: HaltNotifier | None = None, now: datetime | None = None) -> int:
    """One step of every running rollout; returns how many instances it started updating. Safe
    to run from every worker at once: each rollout's row is locked for its step, and an
    instance is moved only while it is idle."""
    with database.sessions() as session:
        running = session.scalars(select(Rollout.id).where(Rollout.status.in_(ACTIVE))).all()
    started = 0
    for rollout_id in running:
        try:
            with database.session() as session:
                rollout = _rollout(session, rollout_id)
                if rollout.status in ACTIVE:
                    started += step(session, rollout, now or utcnow(), on_halt)
        except Exception:  # one rollout's trouble never stops the others
            log.exception("step of rollout %s failed", rollout_id)
    return started


def step(session: Session, rollout: Rollout, now: datetime, on_halt: HaltNotifier | None = None) -> int:
    members = list(rollout.members)
    for member in members:
        if member.state == MemberState.UPDATING.value:
            _notice_departure(session, rollout, member)
        elif member.state == MemberState.PASSED.value:
            _notice_regression(session, rollout, member, now)
    failed = [m for m in members if m.state == MemberState.ROLLED_BACK.value]
    finished = [m for m in members if m.state in FINISHED]
    if over_budget(
        canary_failed=any(m.wave == CANARY for m in failed),
        failed=len(failed),
        finished=len(finished),
        budget_percent=rollout.failure_budget,
    ):
        _halt(session, rollout, failed, finished, now, on_halt)
        return 0
    unfinished = [m for m in members if m.state in (MemberState.PENDING.value, MemberState.UPDATING.value)]
    if not unfinished:
        passed = sum(m.state == MemberState.PASSED.value for m in members)
        rollout.status, rollout.finished_at = RolloutStatus.COMPLETED.value, now
        rollout.message = f"{passed} instance(s) updated to {rollout.image}"
        log.info("rollout %s completed: %s", rollout.id, rollout.message)
        return 0
    if rollout.status != RolloutStatus.RUNNING.value:
        return 0  # paused: what is updating finishes, nothing new starts
    _keep_a_canary(rollout, members)
    wave = min(m.wave for m in unfinished)
    current = [m for m in unfinished if m.wave == wave]
    if any(m.state == MemberState.UPDATING.value for m in current):
        return 0
    ended = [m.finished_at for m in members if CANARY <= m.wave < wave and m.finished_at]
    if ended and now < max(ended) + timedelta(seconds=rollout.soak_seconds):
        return 0
    started = sum(_begin(session, rollout, member, now) for member in current)
    if started:
        rollout.message = f"{'canary' if wave == CANARY else f'wave {wave}'}: {started} updating"
    return started


def _keep_a_canary(rollout: Rollout, members: list[RolloutInstance]) -> None:
    """No wave starts before a canary passed: when every canary left (paused, removed, skipped),
    the next waiting instance becomes the canary."""
    if rollout.canary < 1 or any(m.wave == CANARY and m.state == MemberState.PASSED.value for m in members):
        return
    if any(m.wave == CANARY and m.state in (MemberState.PENDING, MemberState.UPDATING) for m in members):
        return
    waiting = sorted(
        (m for m in members if m.state == MemberState.PENDING.value and m.wave > CANARY),
        key=lambda m: (m.wave, m.stack_name),
    )
    if waiting:
        waiting[0].wave = CANARY


def _begin(session: Session, rollout: Rollout, member: RolloutInstance, now: datetime) -> bool:
    instance = session.get(Instance, member.instance_id, with_for_update=True)
    reason = "removed" if instance is None else not_updatable(instance, Cohort.parse(rollout.cohort))
    if reason is None and instance.desired_image != member.previous_image:
        reason = f"its version changed since the plan (now {openclaw.version_of(instance.desired_image)})"
    if reason is not None:
        member.state, member.finished_at = MemberState.SKIPPED.value, now
        member.message = f"not updated: {reason}"
        return False
    if busy(instance):
        return False  # another change first; the next step tries again
    instance.desired_image, instance.rollout_id = rollout.image, rollout.id
    lifecycle.desired_changed(
        session,
        instance,
        "requested",
        f"Updating OpenClaw to {openclaw.version_of(rollout.image)} (rollout {rollout.id})",
        waiting="Waiting for a worker to update OpenClaw",
    )
    member.state, member.generation, member.started_at = MemberState.UPDATING.value, instance.generation, now
    member.message = ""
    return True


def _release(
    instance: Instance | None, rollout: Rollout, member: RolloutInstance, state: MemberState, message: str
) -> None:
    """Take `member` out of its update: its instance back on the image it had (unless something
    else moved it since), the rollout no longer its."""
    if instance is not None:
        if instance.desired_image == rollout.image:
            instance.desired_image = member.previous_image
        if instance.rollout_id == rollout.id:
            instance.rollout_id = None
    member.state, member.message = state.value, message
    member.finished_at = utcnow() if state == MemberState.SKIPPED else None
    if state == MemberState.PENDING:
        member.started_at = member.generation = None


def _stop_queued(
    session: Session, rollout: Rollout, state: MemberState, message: str, *, skip_pending: bool = False
) -> None:
    """Updates asked for but not begun by any worker (no lease, the generation not reached)
    are called off; the worker that later claims one converges it to its old image, a no-op.
    An update under way finishes behind its gate."""
    for member in rollout.members:
        if member.state == MemberState.PENDING.value and skip_pending:
            member.state, member.message, member.finished_at = state.value, message, utcnow()
        if member.state != MemberState.UPDATING.value:
            continue
        instance = session.get(Instance, member.instance_id, with_for_update=True)
        if instance is None or instance.desired_state != "running":
            _release(instance, rollout, member, MemberState.SKIPPED, "left the rollout (paused or removed)")
        elif instance.lease_owner is None and instance.observed_generation < (member.generation or 0):
            _release(instance, rollout, member, state, message)


def _notice_departure(session: Session, rollout: Rollout, member: RolloutInstance) -> None:
    """An instance paused or removed mid-update leaves the rollout without a gate's outcome; it
    keeps its old image (it starts on it when resumed)."""
    instance = session.get(Instance, member.instance_id)
    if instance is None or instance.desired_state != "running":
        _release(instance, rollout, member, MemberState.SKIPPED, "left the rollout (paused or removed)")


def _notice_regression(session: Session, rollout: Rollout, member: RolloutInstance, now: datetime) -> None:
    """The soak watches what passed: an updated instance the fleet scan found unhealthy since
    counts as a failure and goes back to its old image."""
    instance = session.get(Instance, member.instance_id)
    if instance is None or instance.health != Health.UNHEALTHY.value:
        return
    member.state, member.finished_at = MemberState.ROLLED_BACK.value, now
    member.message = "became unhealthy after its update; rolled back"
    if instance.desired_image == rollout.image and instance.rollout_id is None:
        instance.desired_image = member.previous_image
        lifecycle.rollback_requested(
            session,
            instance,
            f"Unhealthy since OpenClaw {openclaw.version_of(rollout.image)}; going back to "
            f"{openclaw.version_of(member.previous_image)}",
        )


def _halt(
    session: Session,
    rollout: Rollout,
    failed: list[RolloutInstance],
    finished: list[RolloutInstance],
    now: datetime,
    on_halt: HaltNotifier | None,
) -> None:
    canary = [m.stack_name for m in failed if m.wave == CANARY]
    reason = (
        f"the canary {', '.join(canary)} failed its health gate"
        if canary
        else f"{len(failed)} of {len(finished)} updated instances failed their gate "
        f"(budget {rollout.failure_budget:g} %)"
    )
    rollout.status, rollout.finished_at = RolloutStatus.HALTED.value, now
    _stop_queued(session, rollout, MemberState.SKIPPED, "not updated: the rollout halted")
    rollout.message = f"Halted: {reason}; each failed instance was rolled back. " + (
        failed[0].message if failed else ""
    )
    log.error("rollout %s halted: %s", rollout.id, reason)
    if on_halt is not None:
        on_halt(session, rollout)


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveProgress:
    wave: int
    counts: dict[str, int]  # member state -> how many

    @property
    def size(self) -> int:
        return sum(self.counts.values())

    @property
    def label(self) -> str:
        return "canary" if self.wave == CANARY else f"wave {self.wave}"

    def percent(self, state: str) -> float:
        return 100.0 * self.counts.get(state, 0) / self.size if self.size else 0.0


def progress(rollout: Rollout) -> list[WaveProgress]:
    """Each wave's members by state, in order (members skipped at plan time are left out)."""
    waves: dict[int, dict[str, int]] = {}
    for member in rollout.members:
        if member.wave >= CANARY:
            counts = waves.setdefault(member.wave, {})
            counts[member.state] = counts.get(member.state, 0) + 1
    return [WaveProgress(wave, counts) for wave, counts in sorted(waves.items())]
