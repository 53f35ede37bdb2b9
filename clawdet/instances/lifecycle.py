"""An instance's lifecycle: the one vocabulary of its state and the one place that changes it.

Every write of `status`, `health`, `requested_action`, the retry fields and every instance event
goes through a named transition below; views, the CLI and the reconciler call these and never set
those fields themselves. Decisions (how a failed attempt settles) are pure functions, tested as a
table in tests/unit/instances/test_lifecycle.py.

The enums' values are what the database stores (db/models.py keeps them as plain strings).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from db.models import Instance, InstanceEvent, utcnow


class DesiredState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # no server (no server cost); the volume and the firewall stay
    DESTROYED = "destroyed"


class InstanceStatus(enum.StrEnum):
    PENDING = "pending"
    CREATING = "creating"
    BOOTING = "booting"
    READY = "ready"
    PAUSED = "paused"
    FAILED = "failed"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"


class Health(enum.StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Action(enum.StrEnum):
    """What an owner, an operator or the fleet scan asks of a running instance."""

    REBOOT = "reboot"  # reboot the server (the fleet scan's cure for a gateway that stopped answering)
    REBUILD = "rebuild"  # replace the server
    REPAIR = "repair"  # `up` with refresh: recreate what drifted


class EventKind(enum.StrEnum):
    STATUS = "status"  # a request or a settled state
    PROGRESS = "progress"  # a step of the progress bar
    ERROR = "error"  # a failed attempt, drift found
    LOG = "log"  # worth keeping, not worth showing as the current state


# The named steps of the dashboard's progress bar, in order, with how far along each one is.
STEPS = (
    ("requested", "Requested", 0),
    ("firewall", "Firewall", 15),
    ("volume", "Data volume", 30),
    ("server", "Server", 40),
    ("deploy", "Gateway configuration", 55),
    ("dns", "DNS record", 65),
    ("booting", "Starting the gateway", 75),
    ("checking", "First chat", 90),
    ("ready", "Ready", 100),
)
STEP_PROGRESS = {key: progress for key, _, progress in STEPS}
DESTROY_RETRY = timedelta(hours=1)  # a destroy is never given up: servers left running cost money


# -- decisions (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    backoff_base: float = 5.0
    backoff_cap: float = 300.0

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.backoff_base * 2 ** (attempts - 1), self.backoff_cap))


@dataclass(frozen=True)
class Settlement:
    """How one failed attempt ends: tried again after `retry_in`, or settled as `status`."""

    retry_in: timedelta | None  # None: no further attempt
    status: InstanceStatus  # the status the instance shows now
    cleanup: bool  # destroy what a first create made
    alarm: bool  # a destroy that keeps failing: shout in the logs

    @property
    def final(self) -> bool:
        return self.retry_in is None


def settle_failure(
    attempts: int, policy: RetryPolicy, *, destroying: bool, first_create: bool, status: InstanceStatus
) -> Settlement:
    """After `attempts` failed attempts (this one counted):
    - not the last attempt: retry with exponential backoff, status unchanged;
    - a destroy: never give up (servers left running cost money); hourly after the last attempt;
    - a first create: failed, and what was made is cleaned up;
    - an instance that once was ready: failed, its server kept (a failed repair must never delete a
      customer's data)."""
    final = attempts >= policy.max_attempts
    if destroying:
        return Settlement(DESTROY_RETRY if final else policy.backoff(attempts), status, False, final)
    if not final:
        return Settlement(policy.backoff(attempts), status, False, False)
    return Settlement(None, InstanceStatus.FAILED, first_create, False)


def health_change(current: Health, failures: int, ok: bool, unhealthy_after: int) -> tuple[Health, int]:
    """The health and failure count after one probe: healthy at once, unhealthy only after
    `unhealthy_after` failed probes in a row (no flapping alerts)."""
    if ok:
        return Health.HEALTHY, 0
    failures += 1
    return (Health.UNHEALTHY if failures >= unhealthy_after else current), failures


# -- transitions -----------------------------------------------------------------------------


def record(
    session: Session,
    instance: Instance,
    step: str,
    message: str,
    *,
    kind: EventKind = EventKind.PROGRESS,
    status: InstanceStatus | None = None,
    progress: int | None = None,
    current: bool | None = None,
) -> None:
    """An event on the instance's trail; it is also the instance's current message when
    `current` (default: any event but a log line)."""
    if status is not None:
        instance.status = status.value
    if current if current is not None else kind != EventKind.LOG:
        instance.status_message = message
    session.add(
        InstanceEvent(
            instance_id=instance.id,
            kind=kind.value,
            step=step,
            message=message,
            progress=progress if progress is not None else STEP_PROGRESS.get(step),
            generation=instance.generation,
        )
    )


def bump_generation(session: Session, instance: Instance) -> int:
    """A new desired state, counted in SQL: two requests at once both count (a `+= 1` on a
    loaded row would lose one, and with it perhaps a destroy)."""
    instance.generation = Instance.generation + 1
    session.flush()
    return instance.generation


def requested(session: Session, instance: Instance, message: str, *, renewed: bool) -> None:
    """A (new) life for the instance: run it, from the first step. `renewed`: a new life under
    an old name, which is a new generation of the old row."""
    instance.desired_state = DesiredState.RUNNING.value
    instance.requested_action = None
    instance.attempts, instance.next_attempt_at = 0, None
    instance.destroyed_at = None
    instance.status = InstanceStatus.PENDING.value
    if renewed:
        bump_generation(session, instance)
    record(session, instance, "requested", message, kind=EventKind.STATUS, progress=0, current=False)
    instance.status_message = "Waiting for a worker"


def destroy_requested(session: Session, instance: Instance, message: str = "Removal requested") -> None:
    instance.desired_state = DesiredState.DESTROYED.value
    bump_generation(session, instance)
    instance.requested_action = None
    instance.attempts, instance.next_attempt_at = 0, None
    record(session, instance, "destroying", message, kind=EventKind.STATUS, current=False)
    instance.status_message = "Waiting to be removed"


def action_requested(
    session: Session, instance: Instance, action: Action, message: str, *, waiting: str | None = None
) -> None:
    """Ask a worker for `action` now (no backoff wait). A failed instance, or one whose desired
    state is not running, is simply worked again (a new generation) instead."""
    if (
        instance.desired_state == DesiredState.RUNNING.value
        and instance.status != InstanceStatus.FAILED.value
    ):
        instance.requested_action = instance.requested_action or action.value
    else:
        bump_generation(session, instance)
    instance.attempts, instance.next_attempt_at = 0, None
    record(session, instance, "requested", message, kind=EventKind.STATUS, progress=0, current=False)
    if waiting:
        instance.status_message = waiting


def desired_changed(
    session: Session,
    instance: Instance,
    step: str,
    message: str,
    *,
    desired: DesiredState | None = None,
    waiting: str | None = None,
) -> None:
    """A new desired state (paused or running again, a rotated credential, another tier):
    converge again."""
    if desired is not None:
        instance.desired_state = desired.value
    bump_generation(session, instance)
    record(session, instance, step, message, kind=EventKind.STATUS, current=False)
    if waiting:
        instance.status_message = waiting


def rollback_requested(session: Session, instance: Instance, message: str) -> None:
    """A rollout's update failed its gate; the caller set the image it ran before. Converge again
    at once: no backoff, no attempt counted against the old version."""
    instance.attempts, instance.next_attempt_at = 0, None
    desired_changed(session, instance, "rollback", message, waiting="Going back to the version that worked")


def paused(instance: Instance, generation: int) -> None:
    """The worked generation converged to paused: no server, nothing to probe."""
    _settled(instance, generation)
    instance.attempts = 0
    instance.server_id = instance.ipv4 = instance.ipv6 = None
    instance.llm_key_previous_hash = None  # no server needs the old key
    instance.health, instance.health_failures = Health.UNKNOWN.value, 0


def drift_found(session: Session, instance: Instance, action: Action, problems: list[str]) -> bool:
    """The fleet scan marks an idle instance for repair; False when it is busy already."""
    if instance.requested_action is not None or instance.lease_owner is not None:
        return False
    instance.requested_action = action.value
    session.add(
        InstanceEvent(
            instance_id=instance.id,
            kind=EventKind.ERROR.value,
            step="drift",
            message="Found: " + "; ".join(problems),
            generation=instance.generation,
        )
    )
    return True


def health_observed(instance: Instance, ok: bool, unhealthy_after: int, now: datetime) -> bool | None:
    """One probe's result; returns True/False when the health flipped up/down, else None."""
    health, failures = health_change(Health(instance.health), instance.health_failures, ok, unhealthy_after)
    instance.health_checked_at, instance.health_failures = now, failures
    if health == instance.health:
        return None
    instance.health, instance.health_changed_at = health.value, now
    return health == Health.HEALTHY


def working(instance: Instance) -> None:
    instance.status = InstanceStatus.CREATING.value


def ready(instance: Instance, generation: int) -> tuple[bool, bool]:
    """The worked generation converged and the gateway answers. Returns (first time ready,
    recovered from unhealthy)."""
    _settled(instance, generation)
    instance.attempts = 0
    if instance.observed_generation == instance.generation:
        instance.llm_key_previous_hash = None  # the server runs the current key now
    first, now = instance.ready_at is None, utcnow()
    recovered = instance.health == Health.UNHEALTHY.value
    instance.ready_at = instance.ready_at or now
    if instance.health != Health.HEALTHY.value:
        instance.health_changed_at = now
    instance.health, instance.health_checked_at, instance.health_failures = Health.HEALTHY.value, now, 0
    return first, recovered


def destroyed(instance: Instance, generation: int) -> None:
    _settled(instance, generation)
    instance.attempts = 0
    instance.server_id = instance.ipv4 = instance.ipv6 = instance.dns_record_id = None
    instance.url, instance.health = None, Health.UNKNOWN.value
    instance.llm_key_previous_hash = None
    instance.destroyed_at = utcnow()


def attempt_failed(instance: Instance, policy: RetryPolicy, *, give_up: bool = False) -> Settlement:
    """Count a failed attempt and schedule the next one, if any (`give_up`: a failure no retry
    can mend counts as the last attempt)."""
    instance.attempts = max(instance.attempts + 1, policy.max_attempts if give_up else 0)
    destroying = instance.desired_state == DesiredState.DESTROYED.value
    settlement = settle_failure(
        instance.attempts,
        policy,
        destroying=destroying,
        first_create=not destroying and instance.ready_at is None,
        status=InstanceStatus(instance.status),
    )
    if settlement.retry_in is not None:
        instance.next_attempt_at = utcnow() + settlement.retry_in
    return settlement


def gave_up(instance: Instance, generation: int, *, resources_removed: bool) -> None:
    """The last attempt failed; the generation worked is settled (a newer one stays queued)."""
    instance.observed_generation = max(instance.observed_generation, generation)
    instance.requested_action = None
    instance.next_attempt_at = None
    if resources_removed:
        instance.server_id = instance.ipv4 = instance.ipv6 = instance.dns_record_id = instance.url = None


def _settled(instance: Instance, generation: int) -> None:
    if instance.generation == generation:
        instance.observed_generation = generation
    instance.requested_action = None
    instance.next_attempt_at = None


def in_flight(instance: Instance) -> bool:
    return (
        instance.lease_owner is not None
        or instance.generation > instance.observed_generation
        or instance.requested_action is not None
    )
