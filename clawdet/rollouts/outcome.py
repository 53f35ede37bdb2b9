"""What a reconciler records when it finishes an instance's update for a rollout: the gate
passed, or it failed and the instance goes back to its previous image in place."""

from __future__ import annotations

from sqlalchemy.orm import Session

from clawdet.instances import lifecycle
from clawdet.ops import metrics
from clawdet.rollouts import MemberState
from db.models import Instance, Rollout, RolloutInstance, utcnow
from programs import openclaw


def member(session: Session, instance: Instance) -> RolloutInstance | None:
    if instance.rollout_id is None:
        return None
    return session.get(RolloutInstance, (instance.rollout_id, instance.id))


def gate_seconds(session: Session, instance: Instance) -> float | None:
    """How long this instance's gate waits for the gateway, when a rollout is updating it."""
    rollout = session.get(Rollout, instance.rollout_id) if instance.rollout_id else None
    return float(rollout.gate_seconds) if rollout is not None else None


def passed(session: Session, instance: Instance) -> None:
    found = member(session, instance)
    instance.rollout_id = None
    if found is None or found.state != MemberState.UPDATING.value:
        return
    found.state, found.finished_at = MemberState.PASSED.value, utcnow()
    found.message = "updated; the gateway answered and a chat went through"
    metrics.increment(session, "clawdet_rollout_instances_total", {"outcome": "passed"})


def rolled_back(session: Session, instance: Instance, reason: str) -> str | None:
    """The update failed (the engine or the gate): the instance's desired image goes back to the
    one it ran, and a worker converges it again at once. Returns that image."""
    found = member(session, instance)
    instance.rollout_id = None
    if found is None or found.state != MemberState.UPDATING.value:
        return None
    previous = found.previous_image
    found.state, found.finished_at = MemberState.ROLLED_BACK.value, utcnow()
    found.message = f"failed its gate ({reason}); rolled back to {openclaw.version_of(previous) or previous}"
    instance.desired_image = previous
    lifecycle.rollback_requested(
        session,
        instance,
        f"The update failed ({reason}); going back to OpenClaw {openclaw.version_of(previous)}",
    )
    metrics.increment(session, "clawdet_rollout_instances_total", {"outcome": "rolled_back"})
    return previous
