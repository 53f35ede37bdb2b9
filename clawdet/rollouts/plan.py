"""`clawdet rollout plan`: which instances a release moves and what the engine would do to each
stack (its own preview, refreshed, in parallel), stored under an id that `start` approves."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from clawdet.rollouts import MemberState, RolloutStatus
from clawdet.rollouts.cohort import Cohort, busy, fingerprint, not_updatable
from clawdet.rollouts.waves import DEFAULT_WAVES, NOT_IN_A_WAVE, assign, check_percentages
from db import audit
from db.models import Instance, Role, Rollout, RolloutInstance
from programs import openclaw
from programs.instance_config import digest_pinned_image, pinned_image
from programs.tiers import TIERS

UPDATE, REPLACE, NO_CHANGE, SKIPPED, ERROR = "update", "replace", "no change", "skipped", "error"
DRIFTED = "drifted"
REPLACING = {"replace", "create-replacement", "delete-replaced"}
DRIFTING = {"create", "delete"}  # a converged stack whose refresh wants these lost something in the cloud


@dataclass(frozen=True)
class PlanOptions:
    canary: int = 1
    canary_names: tuple[str, ...] = ()  # preferred canaries (internal or opted-in instances)
    waves: tuple[int, ...] = DEFAULT_WAVES
    soak_seconds: int = 300
    failure_budget: float = 5.0
    gate_seconds: int = 180
    allow_replace: bool = False
    parallel: int = 4

    def check(self) -> None:
        check_percentages(self.waves)
        if self.canary < 0:
            raise ValueError("--canary must be 0 or more")
        if not 0 <= self.failure_budget <= 100:
            raise ValueError("--budget is a percentage between 0 and 100")
        if self.gate_seconds < 10 or self.soak_seconds < 0 or self.parallel < 1:
            raise ValueError("--gate-seconds must be at least 10, --soak 0 or more, --parallel 1 or more")


@dataclass
class PlannedStack:
    name: str
    instance_id: str
    operation: str  # update, replace, no change, skipped, error
    detail: str = ""
    wave: int = NOT_IN_A_WAVE
    fingerprint: str = ""
    image: str | None = None  # what the instance runs now: where a failed update goes back to
    order: tuple = ()


@dataclass
class Plan:
    image: str
    cohort: Cohort
    stacks: list[PlannedStack] = field(default_factory=list)
    refused: str | None = None
    rollout_id: str | None = None

    @property
    def totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for stack in self.stacks:
            totals[stack.operation] = totals.get(stack.operation, 0) + 1
        return totals


def release_image(version: str, *, by_digest: bool) -> str:
    """`2026.9.7` or a full image reference, checked like the stack's own config; `by_digest`
    (real servers): only `name:tag@sha256:<digest>`, since a tag can be moved to other bytes."""
    image = openclaw.image_for(version.strip())
    return digest_pinned_image(image, "--version") if by_digest else pinned_image(image)


def make_plan(reconciler, version: str, cohort: Cohort, options: PlanOptions, actor: str) -> Plan:
    """Preview every affected stack and store the plan, unless it is refused (a replace without
    `allow_replace`, a stack the engine could not preview). `reconciler` gives the stack config
    and the engine, exactly as a worker would use them."""
    options.check()
    plan = Plan(release_image(version, by_digest=not reconciler.target.sandbox), cohort)
    previews: list[tuple[PlannedStack, dict]] = []
    with reconciler.database.sessions() as session:
        for instance in cohort.members(session):
            stack = PlannedStack(
                instance.stack_name,
                instance.id,
                SKIPPED,
                fingerprint=fingerprint(instance),
                image=instance.desired_image,
            )
            stack.order = _order(instance, options)
            plan.stacks.append(stack)
            reason = not_updatable(instance, cohort)
            if reason is None and busy(instance):
                reason = f"busy ({instance.status}): plan again when it settles"
            if reason is not None:
                stack.detail = reason
            elif instance.desired_image == plan.image:
                stack.operation, stack.detail = NO_CHANGE, "already on this version"
            else:
                previews.append((stack, reconciler.stack_config(instance, image=plan.image)))
    with ThreadPoolExecutor(max_workers=options.parallel) as pool:
        for stack, outcome in zip(
            (s for s, _ in previews),
            pool.map(lambda item: _preview(reconciler, item[0].name, item[1]), previews),
            strict=True,
        ):
            stack.operation, stack.detail = outcome
    _assign_waves(plan, options)
    plan.refused = _refusal(plan, options)
    if plan.refused is None:
        with reconciler.database.session() as session:
            plan.rollout_id = _store(session, plan, options, actor)
    return plan


def _preview(reconciler, name: str, config: dict) -> tuple[str, str]:
    try:
        changes = reconciler.stacks.preview_with(name, config)
    except Exception as exc:  # one stack's failure is reported in the plan, not raised
        from clawdet.reconciler.reconciler import short_reason

        return ERROR, short_reason(exc)
    return classify(changes)


def classify(changes: dict[str, set[str]]) -> tuple[str, str]:
    """A stack's preview (operations by resource type) as one word and the detail."""
    described = ", ".join(
        f"{kind.rsplit(':', 1)[-1]} {'/'.join(sorted(ops))}" for kind, ops in sorted(changes.items())
    )
    operations = set().union(*changes.values()) if changes else set()
    if operations & REPLACING:
        return REPLACE, described
    if operations & DRIFTING:
        return DRIFTED, f"the cloud no longer matches the stack ({described})"
    return (UPDATE, described) if changes else (NO_CHANGE, "the engine sees nothing to change")


def _order(instance: Instance, options: PlanOptions) -> tuple:
    """Rollout order: the chosen canaries, then instances of the platform's own people, then
    by tier (free first) and age."""
    tiers = list(TIERS)
    return (
        instance.subdomain not in options.canary_names,
        instance.user.role != Role.ADMIN.value,
        tiers.index(instance.tier) if instance.tier in tiers else len(tiers),
        instance.created_at,
        instance.id,
    )


def _assign_waves(plan: Plan, options: PlanOptions) -> None:
    moving = sorted((s for s in plan.stacks if s.operation in (UPDATE, REPLACE)), key=lambda s: s.order)
    for stack, wave in zip(moving, assign(len(moving), options.canary, options.waves), strict=True):
        stack.wave = wave


def _refusal(plan: Plan, options: PlanOptions) -> str | None:
    errors = [s for s in plan.stacks if s.operation == ERROR]
    if errors:
        return f"the engine could not preview {len(errors)} stack(s): " + "; ".join(
            f"{s.name}: {s.detail}" for s in errors[:5]
        )
    drifted = [s.name for s in plan.stacks if s.operation == DRIFTED]
    if drifted:
        return (
            f"{len(drifted)} stack(s) drifted from the cloud ({', '.join(drifted[:10])}): repair them "
            "first (`clawdet scan`, then `clawdet reconcile`), then plan again"
        )
    replacing = [s.name for s in plan.stacks if s.operation == REPLACE]
    if replacing and not options.allow_replace:
        return (
            f"{len(replacing)} stack(s) would replace their server ({', '.join(replacing[:10])}): "
            "a replacement risks the data on it. Find out why first; pass --allow-replace if it is intended"
        )
    if not any(s.operation in (UPDATE, REPLACE) for s in plan.stacks):
        return "nothing to roll out: no instance in the cohort needs this release now"
    return None


def _store(session: Session, plan: Plan, options: PlanOptions, actor: str) -> str:
    rollout = Rollout(
        image=plan.image,
        cohort=str(plan.cohort),
        status=RolloutStatus.PLANNED.value,
        allow_replace=options.allow_replace,
        canary=options.canary,
        waves=list(options.waves),
        soak_seconds=options.soak_seconds,
        failure_budget=options.failure_budget,
        gate_seconds=options.gate_seconds,
        totals=plan.totals,
        message="",
        created_by=actor,
    )
    session.add(rollout)
    session.flush()
    for stack in plan.stacks:
        moving = stack.operation in (UPDATE, REPLACE)
        session.add(
            RolloutInstance(
                rollout_id=rollout.id,
                instance_id=stack.instance_id,
                stack_name=stack.name,
                wave=stack.wave,
                planned=stack.operation,
                fingerprint=stack.fingerprint,
                previous_image=stack.image,
                state=(MemberState.PENDING if moving else MemberState.SKIPPED).value,
                message="" if moving else stack.detail,
            )
        )
    audit.record(
        session, "rollout.plan", actor=actor, target_type="rollout", target_id=rollout.id, image=plan.image
    )
    return rollout.id
