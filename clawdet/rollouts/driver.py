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

from sqlalchemy import select
from sqlalchemy.orm import Session

from clawdet.errors import UserFacingError
from clawdet.instances import lifecycle
from clawdet.rollouts import ACTIVE, FINISHED, MemberState, RolloutStatus
from clawdet.rollouts.cohort import Cohort, busy, fingerprint, not_updatable
from clawdet.rollouts.waves import CANARY, over_budget
from db import audit
from db.engine import Database
from db.models import Instance, Rollout, RolloutInstance, User, utcnow
from programs import openclaw

log = logging.getLogger(__name__)

HaltNotifier = Callable[[Session, Rollout], None]


def _rollout(session: Session, rollout_id: str, *, lock: bool = False) -> Rollout:
    rollout = session.get(Rollout, rollout_id, with_for_update=lock or None)
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
    """Approve a plan: it runs only if every instance of its cohort is as the plan saw it."""
    rollout = _rollout(session, rollout_id, lock=True)
    if rollout.status != RolloutStatus.PLANNED.value:
        raise _wrong_state(rollout, "start", (RolloutStatus.PLANNED.value,))
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
    return _move(session, rollout_id, actor, "pause", (RolloutStatus.RUNNING,), RolloutStatus.PAUSED)


def resume(session: Session, rollout_id: str, actor: User | str) -> Rollout:
    return _move(session, rollout_id, actor, "resume", (RolloutStatus.PAUSED,), RolloutStatus.RUNNING)


def abort(session: Session, rollout_id: str, actor: User | str) -> Rollout:
    """Nothing more moves forward; an update under way finishes behind its gate (and rolls back
    if it fails); what passed stays."""
    rollout = _move(
        session,
        rollout_id,
        actor,
        "abort",
        (RolloutStatus.PLANNED, RolloutStatus.RUNNING, RolloutStatus.PAUSED, RolloutStatus.HALTED),
        RolloutStatus.ABORTED,
    )
    for member in rollout.members:
        if member.state == MemberState.PENDING.value:
            member.state, member.message = MemberState.SKIPPED.value, "not updated: the rollout was aborted"
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
    rollout = _rollout(session, rollout_id, lock=True)
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
        with database.session() as session:
            rollout = session.get(Rollout, rollout_id, with_for_update=True)
            if rollout is not None and rollout.status in ACTIVE:
                started += step(session, rollout, now or utcnow(), on_halt)
    return started


def step(session: Session, rollout: Rollout, now: datetime, on_halt: HaltNotifier | None = None) -> int:
    members = list(rollout.members)
    for member in members:
        if member.state == MemberState.UPDATING.value:
            _notice_departure(session, member)
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
        rollout.status, rollout.finished_at = RolloutStatus.COMPLETED.value, now
        rollout.message = f"{len(finished)} instance(s) updated to {rollout.image}"
        log.info("rollout %s completed: %s", rollout.id, rollout.message)
        return 0
    if rollout.status != RolloutStatus.RUNNING.value:
        return 0  # paused: what is updating finishes, nothing new starts
    wave = min(m.wave for m in unfinished)
    current = [m for m in unfinished if m.wave == wave]
    if any(m.state == MemberState.UPDATING.value for m in current):
        return 0
    soaked_since = max((m.finished_at for m in finished if m.wave < wave and m.finished_at), default=None)
    if soaked_since is not None and now < soaked_since + timedelta(seconds=rollout.soak_seconds):
        return 0
    started = sum(_begin(session, rollout, member, now) for member in current)
    if started:
        rollout.message = f"wave {wave} ({'canary' if wave == CANARY else 'updating'}): {started} started"
    return started


def _begin(session: Session, rollout: Rollout, member: RolloutInstance, now: datetime) -> bool:
    instance = session.get(Instance, member.instance_id, with_for_update=True)
    reason = "removed" if instance is None else not_updatable(instance, Cohort.parse(rollout.cohort))
    if reason is not None:
        member.state, member.message = MemberState.SKIPPED.value, f"not updated: {reason}"
        return False
    if busy(instance):
        return False  # another change first; the next step tries again
    member.previous_image, member.generation = instance.desired_image, None
    instance.desired_image, instance.rollout_id = rollout.image, rollout.id
    lifecycle.desired_changed(
        session,
        instance,
        "requested",
        f"Updating OpenClaw to {openclaw.version_of(rollout.image)} (rollout {rollout.id})",
        waiting="Waiting for a worker to update OpenClaw",
    )
    member.state, member.generation, member.started_at = MemberState.UPDATING.value, instance.generation, now
    return True


def _notice_departure(session: Session, member: RolloutInstance) -> None:
    """An instance paused or removed mid-update leaves the rollout without a gate's outcome."""
    instance = session.get(Instance, member.instance_id)
    if instance is not None and instance.desired_state == "running":
        return
    if instance is not None and instance.rollout_id == member.rollout_id:
        instance.rollout_id = None
    member.state, member.message = MemberState.SKIPPED.value, "left the rollout (paused or removed)"
    member.finished_at = utcnow()


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
