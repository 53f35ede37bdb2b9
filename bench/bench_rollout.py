"""A fleet rollout against its creation, in the sandbox without API or action delays.

    .venv/bin/python bench/bench_rollout.py [INSTANCES] [WORKERS] [BOOT_SECONDS]   # 200, 2, 0

Creates INSTANCES stand-in-gateway instances with WORKERS reconcilers (threads of one `Worker`),
each server booting in BOOT_SECONDS (0: only the control plane's own cost; a real Hetzner
server takes 30-40 s), then plans and runs a rollout of a new OpenClaw version over all of them
(canary, waves of 1, 10, 25, 50, 100 %, no soak) on the real engine and plugins. Prints the
wall time of the creation, the plan (one engine preview per stack) and the rollout, the median
in-place update per instance (from its start to its gate passing), and the ratio of the
rollout to the creation. Target: an in-place update costs at most half of a create.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select

from clawdet.reconciler.reconciler import Reconciler
from clawdet.reconciler.worker import Worker
from clawdet.rollouts import RolloutStatus, driver
from clawdet.rollouts.cohort import Cohort
from clawdet.rollouts.plan import PlanOptions, make_plan
from db.models import Instance, Rollout
from programs import openclaw
from tests.fixtures.provisioning import FAST, new_instance, pinned, zero_delay_control_plane

RELEASE = pinned(openclaw.image_for("2026.9.7"))  # real servers take releases by digest


def wait_for(predicate, timeout: float = 7200) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.2)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    boot = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    with zero_delay_control_plane(boot_delay=boot) as (_box, database, settings, _env):
        worker = Worker(
            settings,
            database,
            concurrency=workers,
            poll_interval=0.05,
            scan_interval=0,
            rollout_interval=0.2,
            config=FAST,
        )
        started = time.perf_counter()
        for n in range(count):
            new_instance(database, settings, f"bench{n:03d}")
        worker.start()

        def created() -> bool:
            with database.sessions() as session:
                statuses = session.scalars(select(Instance.status)).all()
            if "failed" in statuses:
                raise SystemExit("an instance failed to create")
            return statuses.count("ready") == count

        wait_for(created)
        create_wall = time.perf_counter() - started

        began = time.perf_counter()
        options = PlanOptions(soak_seconds=0, gate_seconds=60, parallel=workers * 2)
        plan = make_plan(
            Reconciler(settings, database, config=FAST), RELEASE, Cohort("unpinned"), options, "bench"
        )
        if plan.refused:
            raise SystemExit(plan.refused)
        plan_wall = time.perf_counter() - began
        began = time.perf_counter()
        with database.session() as session:
            driver.start(session, plan.rollout_id, "bench")

        def settled() -> bool:
            with database.sessions() as session:
                return session.get(Rollout, plan.rollout_id).status != RolloutStatus.RUNNING.value

        wait_for(settled)
        rollout_wall = time.perf_counter() - began
        worker.shutdown()
        worker.wait()
        with database.sessions() as session:
            rollout = session.get(Rollout, plan.rollout_id)
            passed = [m for m in rollout.members if m.state == "passed"]
            per_update = [(m.finished_at - m.started_at).total_seconds() for m in passed]
            status = rollout.status
    print(f"{count} instances, {workers} workers, servers boot in {boot:g}s")
    print(f"create:  {create_wall:7.1f}s wall, {create_wall / count:.2f}s per instance")
    print(f"plan:    {plan_wall:7.1f}s wall, {plan_wall / count:.2f}s per stack (engine preview, refreshed)")
    print(
        f"rollout: {rollout_wall:7.1f}s wall, {rollout_wall / count:.2f}s per instance; {status}, "
        f"{len(passed)}/{count} passed; median update+gate {statistics.median(per_update):.1f}s"
    )
    print(f"ratio: the rollout takes {rollout_wall / create_wall:.2f}x the creation (target <= 0.5)")


if __name__ == "__main__":
    main()
