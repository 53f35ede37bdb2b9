"""The reconciler under faults: flaky cloud APIs, a worker killed mid-`up`, two workers."""

import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import select

from clawdet.reconciler.worker import Worker
from db.models import Instance, InstanceEvent
from tests.fixtures import eventually, kill_machine
from tests.fixtures.provisioning import FAST, REPO, instance, new_instance, records_named, servers_named

pytestmark = [pytest.mark.engine, pytest.mark.postgres]


def statuses(database, ids):
    with database.sessions() as session:
        return {i: session.get(Instance, i).status for i in ids}


def assert_no_orphans(box, database):
    """Every server, firewall and record in the cloud belongs to exactly one ready instance."""
    with database.sessions() as session:
        ready = {
            row.stack_name for row in session.scalars(select(Instance).where(Instance.status == "ready"))
        }
    inventory = box.inventory()
    server_names = [s["labels"]["clawdet-instance"] for s in inventory["servers"]]
    assert sorted(server_names) == sorted(ready)
    assert sorted(f["name"] for f in inventory["firewalls"]) == sorted(ready)
    a_records = [r["name"].split(".")[0] for r in inventory["dns_records"] if r["type"] == "A"]
    assert sorted(a_records) == sorted(ready)


def test_flaky_cloud_ten_instances_two_workers(prov_settings, prov_db, cloud_sandbox):
    for service in ("hetzner", "cloudflare"):
        cloud_sandbox.faults.add(service=service, error_rate=0.10, status=500)
        cloud_sandbox.faults.add(service=service, error_rate=0.05, status=503, latency=0.2)
        cloud_sandbox.faults.add(service=service, error_rate=0.05, status=429, retry_after=1)
    ids = [new_instance(prov_db, prov_settings, f"flaky{n}") for n in range(10)]
    worker = Worker(
        prov_settings, prov_db, concurrency=2, poll_interval=0.2, scan_interval=0, config=FAST
    ).start()
    try:
        eventually(
            lambda: set(statuses(prov_db, ids).values()) <= {"ready", "failed"},
            900,
            what="every instance ready or failed",
        )
    finally:
        worker.shutdown()
        worker.wait()
    cloud_sandbox.faults.clear()
    final = statuses(prov_db, ids)
    assert list(final.values()).count("ready") >= 8, final  # retries absorb most faults
    assert_no_orphans(cloud_sandbox, prov_db)


def test_sigkill_mid_up_second_worker_finishes_without_duplicates(
    prov_env, prov_settings, prov_db, cloud_sandbox
):
    instance_id = new_instance(prov_db, prov_settings, "killed")
    cloud_sandbox.faults.add(service="cloudflare", latency=3.0)  # keep `up` busy after the server exists
    env = {**os.environ, **prov_env}
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clawdet.cli",
            "worker",
            "--scan-interval",
            "0",
            "--lease-seconds",
            "8",
            "--ready-deadline",
            "30",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(lambda: servers_named(cloud_sandbox, "killed"), 180, what="the first worker's server")
        kill_machine(first)  # the engine it started dies with it, as on a crashed machine
    finally:
        if first.poll() is None:
            first.kill()
    cloud_sandbox.faults.clear()
    assert instance(prov_db, instance_id).lease_owner is not None  # the dead worker's lease stays
    second = Worker(
        prov_settings, prov_db, concurrency=1, poll_interval=0.2, scan_interval=0, config=FAST
    ).start()
    try:
        eventually(
            lambda: instance(prov_db, instance_id).status in ("ready", "failed"),
            300,
            what="the second worker to finish",
        )
    finally:
        second.shutdown()
        second.wait()
    done = instance(prov_db, instance_id)
    assert done.status == "ready", done.status_message
    [server] = servers_named(cloud_sandbox, "killed")
    assert str(server["id"]) == done.server_id
    assert len([r for r in records_named(cloud_sandbox, "killed.clawdet.test") if r["type"] == "A"]) == 1
    with prov_db.sessions() as session:
        steps = session.scalars(
            select(InstanceEvent.step).where(InstanceEvent.instance_id == instance_id)
        ).all()
    assert "recovery" in steps


def test_sigterm_lets_the_running_operation_finish(prov_env, prov_settings, prov_db, cloud_sandbox):
    instance_id = new_instance(prov_db, prov_settings, "graceful")
    env = {**os.environ, **prov_env}
    worker = subprocess.Popen(
        [sys.executable, "-m", "clawdet.cli", "worker", "--scan-interval", "0", "--ready-deadline", "30"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        eventually(lambda: instance(prov_db, instance_id).status == "creating", 120, what="creating")
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=300)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, output
    assert "no lease or lock left behind" in output
    done = instance(prov_db, instance_id)
    assert done.status == "ready" and done.lease_owner is None
    locks = prov_settings.pulumi_backend_url.removeprefix("file://") + "/.pulumi/locks"
    assert not any(files for _, _, files in os.walk(locks))
