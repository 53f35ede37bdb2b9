"""Fleet rollouts: a new OpenClaw image for a cohort of instances, planned with the engine's
preview, approved by id, then executed canary first and in waves behind a health gate, with an
automatic in-place rollback of any instance that fails it and a failure budget that halts the
rollout.

- `cohort`: which instances a rollout covers and the fingerprint that tells a stale plan.
- `waves`: the pure arithmetic of waves and the failure budget.
- `plan`: previews every affected stack (in parallel) and stores the plan.
- `driver`: approval, pause/resume/abort, and `advance`, the one step every worker runs; it only
  writes desired state (an instance's `desired_image`), the reconcilers do the updates.
- `outcome`: what the reconciler records when a rollout's update passes or fails its gate.

Everything lives in the database (tables `rollouts` and `rollout_instances`), so a rollout
survives any worker's restart; two workers never update one instance at once (the leases).
"""

from __future__ import annotations

import enum


class RolloutStatus(enum.StrEnum):
    PLANNED = "planned"  # stored, waiting for `start` (the approval)
    RUNNING = "running"
    PAUSED = "paused"  # starts nothing new; what is updating finishes
    HALTED = "halted"  # the failure budget was exceeded; every instance is on a version that passed
    ABORTED = "aborted"
    COMPLETED = "completed"


class MemberState(enum.StrEnum):
    PENDING = "pending"
    UPDATING = "updating"
    PASSED = "passed"  # updated, and the gate passed
    ROLLED_BACK = "rolled_back"  # failed the gate, back on its previous image
    SKIPPED = "skipped"  # no change needed, not eligible, or left out (abort, pause, removed)


FINISHED = (MemberState.PASSED.value, MemberState.ROLLED_BACK.value)
ACTIVE = (RolloutStatus.RUNNING.value, RolloutStatus.PAUSED.value)
