"""What a reconciler reads and records when it works an instance a rollout is updating: the
gate's deadline, whether the rollout accepts a new server, and the outcome: the gate passed, or
the update failed and the instance goes back to its previous image in place."""

from __future__ import annotations

from sqlalchemy.orm import Session

from clawdet.instances import lifecycle
from clawdet.ops import metrics
from clawdet.rollouts import MemberState
from db.models import Instance, Rollout, RolloutInstance, utcnow
from programs import openclaw


def updating(session: Session, instance: Instance) -> Rollout | None:
    """The rollout updating `instance` now, if any."""
    return session.get(Rollout, instance.rollout_id) if instance.rollout_id else None


def _member(session: Session, instance: Instance) -> RolloutInstance | None:
    if instance.rollout_id is None:
        return None
    return session.get(RolloutInstance, (instance.rollout_id, instance.id))


def passed(session: Session, instance: Instance) -> None:
    found = _member(session, instance)
    instance.rollout_id = None
    if found is None or found.state != MemberState.UPDATING.value:
        return
    found.state, found.finished_at = MemberState.PASSED.value, utcnow()
    found.message = "updated; the gateway answered and a chat went through"
    metrics.increment(session, "clawdet_rollout_instances_total", {"outcome": "passed"})


def rolled_back(session: Session, instance: Instance, reason: str) -> str | None:
    """The update failed (the engine or the gate): the instance's desired image goes back to the
    one it ran, and a worker converges it again at once. Returns that image; None when the
    instance is not on its way to a rollout's image (then the failure is an ordinary one)."""
    found = _member(session, instance)
    rollout = updating(session, instance)
    instance.rollout_id = None
    if found is None or rollout is None or instance.desired_image != rollout.image:
        return None
    previous = found.previous_image
    if found.state == MemberState.UPDATING.value:  # else: called off meanwhile, counted already
        found.state, found.finished_at = MemberState.ROLLED_BACK.value, utcnow()
        found.message = f"failed its gate ({reason}); rolled back to {openclaw.version_of(previous)}"
        metrics.increment(session, "clawdet_rollout_instances_total", {"outcome": "rolled_back"})
    instance.desired_image = previous
    lifecycle.rollback_requested(
        session,
        instance,
        f"The update failed ({reason}); going back to OpenClaw {openclaw.version_of(previous)}",
    )
    return previous
