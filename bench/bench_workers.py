"""Wall time and CPU per operation with 1, 2 and 4 worker processes, on PostgreSQL.

    .venv/bin/python bench/bench_workers.py [--count 40] [--workers 1,2,4] [--concurrency 1]

Each run: a fresh PostgreSQL database (queue and Pulumi state: the postgres:// backend), the
zero-delay sandbox, `count` instances requested at once, then N `clawdet worker` processes, each a
host of its own (data dir, stack files), until every instance is ready. With the sandbox's delays
at zero, what remains is the control plane's own work. CPU is that of the worker processes and
everything they started (the pulumi CLI, the language host, the plugins, the Python program),
read with getrusage(RUSAGE_CHILDREN) once they have exited, divided by the operations they ran.
The web app (the LLM proxy of each gateway's first chat) and the sandbox run in this process and
are not counted. Targets (issue 17): one `up` of a new instance <= 3 s of control-plane
overhead; 2 processes >= 1.7x one on a 2-core machine. PostgreSQL: CLAWDET_TEST_POSTGRES_URL, or
tests/postgres.sh starts one.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select

from clawdet.ops import metrics as ops_metrics
from db.models import Instance
from tests.fixtures import kill_machine
from tests.fixtures.database import migrated_template, new_postgres_database
from tests.fixtures.provisioning import new_instance, require_toolchain, worker_host, zero_delay_control_plane

DEADLINE = 1800
TEMPLATE = "clawdet_bench_template"  # the benchmark's own, remade at each start


def postgres_admin() -> str:
    url = os.environ.get("CLAWDET_TEST_POSTGRES_URL")
    if url:
        return url
    started = subprocess.run(
        ["bash", str(ROOT / "tests" / "postgres.sh"), "start"], capture_output=True, text=True, timeout=120
    )
    if started.returncode:
        raise SystemExit(f"could not start PostgreSQL: {started.stderr.strip()}")
    return started.stdout.strip()


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def statuses(database) -> dict[str, str]:
    with database.sessions() as session:
        return dict(session.execute(select(Instance.subdomain, Instance.status)).all())


def operations(database) -> int:
    with database.sessions() as session:
        return int(
            sum(c.value for c in ops_metrics.all_counters(session) if c.name == "clawdet_reconcile_total")
        )


def stop(hosts: list[subprocess.Popen]) -> None:
    """SIGTERM (finish, release), then wait: only a waited-for child's CPU is counted."""
    for host in hosts:
        host.send_signal(signal.SIGTERM)
    for host in hosts:
        try:
            host.wait(60)
        except subprocess.TimeoutExpired:
            kill_machine(host)


def run(admin: str, count: int, processes: int, concurrency: int) -> tuple[float, float, int]:
    """Wall seconds until all `count` are ready, worker CPU seconds, operations run."""
    url, drop = new_postgres_database(admin, TEMPLATE)
    try:
        with (
            zero_delay_control_plane(database_url=url) as (_box, database, settings, env),
            tempfile.TemporaryDirectory() as hosts_dir,
        ):
            for n in range(count):
                new_instance(database, settings, f"bench{n:03d}")
            options = ["--concurrency", str(concurrency), "--scan-interval", "0", "--rollout-interval", "0"]
            cpu_before = cpu_of_children()
            started = time.perf_counter()
            hosts = [worker_host(env, Path(hosts_dir) / f"host{n}", *options) for n in range(processes)]
            try:
                while True:
                    now = statuses(database)
                    if failed := [name for name, status in now.items() if status == "failed"]:
                        raise SystemExit(f"{failed} failed; see {hosts_dir}/host*/worker.log")
                    if all(status == "ready" for status in now.values()):
                        break
                    if time.perf_counter() - started > DEADLINE:
                        raise SystemExit(f"not all ready after {DEADLINE}s: {now}")
                    time.sleep(0.1)
                wall = time.perf_counter() - started
            finally:
                stop(hosts)
            return wall, cpu_of_children() - cpu_before, operations(database)
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=1, help="reconcilers per worker process")
    options = parser.parse_args()
    os.environ.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    os.environ.setdefault("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")
    require_toolchain()
    admin = migrated_template(postgres_admin(), TEMPLATE)
    print(
        f"{options.count} instances, zero-delay sandbox, PostgreSQL queue and state, {os.cpu_count()} cores"
    )
    walls: dict[int, float] = {}
    for processes in [int(n) for n in options.workers.split(",")]:
        wall, cpu, ops = run(admin, options.count, processes, options.concurrency)
        walls[processes] = wall
        print(
            f"{processes} worker process(es) x {options.concurrency}: all ready in {wall:.1f}s "
            f"({wall / options.count:.2f}s of wall time per instance); {ops} operations, "
            f"worker CPU {cpu:.1f}s = {cpu / ops:.2f}s per operation; load average {os.getloadavg()[0]:.1f}"
        )
    if 1 in walls and options.concurrency == 1:
        each = walls[1] / options.count
        print(f"one `up` of a new instance, end to end: {each:.2f}s (target <= 3 s: {verdict(each <= 3)})")
        for processes in sorted(set(walls) - {1}):
            ratio = walls[1] / walls[processes]
            target = f" (target >= 1.7x: {verdict(ratio >= 1.7)})" if processes == 2 else ""
            print(f"speed-up {processes} vs 1 process: {ratio:.2f}x{target}")


def verdict(met: bool) -> str:
    return "met" if met else "missed"


if __name__ == "__main__":
    main()
