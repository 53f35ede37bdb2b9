"""Control-plane time from "create" to ready in the sandbox with zero cloud delay.

    .venv/bin/python bench/bench_create_to_ready.py

1 instance with 1 worker, then 10 instances with 2 workers (threads of one `Worker`), on the
real engine and plugins. With the sandbox's boot, action and API delays at zero, what remains
is the control plane's own overhead: the engine, the plugins, config writes, health polling.
Target: create->ready overhead <= 8 s per instance.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clawdet.reconciler.worker import Worker
from db.models import Instance
from tests.fixtures.provisioning import FAST, new_instance, zero_delay_control_plane


def run(count: int, workers: int) -> list[float]:
    with zero_delay_control_plane() as (_box, database, settings, _env):
        worker = Worker(
            settings, database, concurrency=workers, poll_interval=0.05, scan_interval=0, config=FAST
        )
        started = time.perf_counter()
        ids = [new_instance(database, settings, f"bench{n}") for n in range(count)]
        worker.start()
        done: dict[str, float] = {}
        while len(done) < count and time.perf_counter() - started < 1800:
            with database.sessions() as session:
                for instance_id in ids:
                    row = session.get(Instance, instance_id)
                    if instance_id not in done and row.status in ("ready", "failed"):
                        if row.status == "failed":
                            raise SystemExit(f"{row.stack_name} failed: {row.status_message}")
                        done[instance_id] = time.perf_counter() - started
            time.sleep(0.05)
        worker.shutdown()
        worker.wait()
        return sorted(done.values())


def main() -> None:
    one = run(1, 1)
    print(f"1 instance, 1 worker: create->ready {one[0]:.1f}s")
    ten = run(10, 2)
    wall = ten[-1]
    print(
        f"10 instances, 2 workers: all ready in {wall:.1f}s; per instance {wall / 10:.1f}s of wall time, "
        f"median time to ready {statistics.median(ten):.1f}s (target <= 8 s overhead per instance)"
    )
    print(f"ratio: 10 instances with 2 workers take {wall / one[0]:.1f}x one instance")


if __name__ == "__main__":
    main()
