"""Fleet rollouts over 20 instances (real engine, stand-in plugins, the sandbox's servers and
stand-in gateways): a good release goes canary → waves → everyone, in place; a `-broken` one
halts after the canary and rolls it back; a worker SIGKILLed mid-wave is replaced by another that
finishes; a plan that would replace servers is refused. One fleet serves every case: creating
it is most of the cost."""

import itertools
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from sqlalchemy import select

from clawdet.reconciler.reconciler import Reconciler
from clawdet.reconciler.worker import Worker
from clawdet.rollouts import MemberState, RolloutStatus, driver
from clawdet.rollouts.cohort import Cohort
from clawdet.rollouts.plan import PlanOptions, make_plan
from db.models import Instance, OutboxEmail, Role, Rollout, User, utcnow
from programs import openclaw
from programs.cloud_init import COMPOSE_FILE_PATH
from tests.fixtures import REPO, eventually, kill_machine
from tests.fixtures.provisioning import FAST, new_instance, pinned, servers_named

pytestmark = [pytest.mark.engine, pytest.mark.postgres]

FLEET = 20
# Real servers run images pinned by digest, so releases are given as such.
GOOD, BROKEN, LAST = (pinned(openclaw.image_for(v)) for v in ("2026.9.7", "2026.9.8-broken", "2026.9.9"))
OPTIONS = PlanOptions(soak_seconds=0, gate_seconds=15, parallel=4)


def snapshot(database) -> dict[str, Instance]:
    with database.sessions() as session:
        rows = session.scalars(select(Instance)).all()
        session.expunge_all()
    return {row.stack_name: row for row in rows}


def rollout_of(database, rollout_id: str) -> Rollout:
    with database.sessions() as session:
        rollout = session.get(Rollout, rollout_id)
        _ = list(rollout.members)
        session.expunge_all()
    return rollout


def running_image(box, server_id: str) -> str:
    compose = box.store.path.parent / "servers" / server_id / COMPOSE_FILE_PATH.lstrip("/")
    return next(
        line.split("image:", 1)[1].strip() for line in compose.read_text().splitlines() if "openclaw/" in line
    )


def until_settled(database, rollout_id: str, timeout: float) -> Rollout:
    done = (RolloutStatus.COMPLETED.value, RolloutStatus.HALTED.value, RolloutStatus.ABORTED.value)
    eventually(
        lambda: rollout_of(database, rollout_id).status in done, timeout, 0.5, what=f"rollout {rollout_id}"
    )
    return rollout_of(database, rollout_id)


def workers(settings, database) -> Worker:
    return Worker(
        settings,
        database,
        concurrency=2,
        poll_interval=0.2,
        scan_interval=0,
        rollout_interval=0.3,
        config=FAST,
    )


def approved(reconciler, version: str, cohort: str = "unpinned", **options) -> str:
    plan = make_plan(reconciler, version, Cohort.parse(cohort), replace(OPTIONS, **options), "operator:test")
    assert plan.refused is None, plan.refused
    with reconciler.database.session() as session:
        driver.start(session, plan.rollout_id, "operator:test")
    return plan.rollout_id


def test_rollouts_over_a_fleet(prov_env, prov_settings, prov_db, cloud_sandbox):
    with prov_db.session() as session:
        session.add(
            User(
                email="ops@example.com",
                email_verified=True,
                name="Ops",
                role=Role.ADMIN.value,
                terms_accepted_at=utcnow(),
            )
        )
    names = [f"fleet{n:02d}" for n in range(FLEET)]
    for name in names:
        new_instance(prov_db, prov_settings, name)
    worker = workers(prov_settings, prov_db).start()
    try:
        eventually(
            lambda: all(i.status == "ready" for i in snapshot(prov_db).values()), 600, 0.5, what="the fleet"
        )
        before = snapshot(prov_db)
        first_image = before[names[0]].openclaw_image
        assert {i.desired_image for i in before.values()} == {first_image}
        reconciler = Reconciler(prov_settings, prov_db, config=FAST)

        # A plan that would replace servers (here: new Hetzner SSH keys for every server) is refused.
        replacing = Reconciler(replace(prov_settings, hcloud_ssh_keys="ops-key"), prov_db, config=FAST)
        refused = make_plan(replacing, GOOD, Cohort.parse("list:fleet00,fleet01"), OPTIONS, "operator:test")
        assert refused.rollout_id is None and "would replace their server" in refused.refused
        assert refused.totals == {"replace": 2}

        # A good release: canary, then waves, every gate passed, in place.
        good = approved(reconciler, GOOD)
        done = until_settled(prov_db, good, 600)
        assert done.status == RolloutStatus.COMPLETED.value, done.message
        assert {m.state for m in done.members} == {MemberState.PASSED.value}
        by_wave: dict[int, list] = {}
        for member in done.members:
            by_wave.setdefault(member.wave, []).append(member)
        assert [len(by_wave[w]) for w in sorted(by_wave)] == [1, 1, 3, 5, 10]  # canary, then 10/25/50/100 %
        waves = sorted(by_wave)
        for earlier, later in itertools.pairwise(waves):
            assert max(m.finished_at for m in by_wave[earlier]) <= min(m.started_at for m in by_wave[later])
        after = snapshot(prov_db)
        image = GOOD
        for name in names:
            assert (
                after[name].server_id == before[name].server_id
                and after[name].volume_id == before[name].volume_id
            )
            assert (
                after[name].openclaw_image == image
                and running_image(cloud_sandbox, after[name].server_id) == image
            )

        # A broken release: the canary fails its gate and goes back; the other 19 are untouched.
        broken = approved(reconciler, BROKEN)
        halted = until_settled(prov_db, broken, 300)
        assert halted.status == RolloutStatus.HALTED.value and "canary" in halted.message
        [canary] = [m for m in halted.members if m.wave == 0]
        assert canary.state == MemberState.ROLLED_BACK.value
        assert {m.state for m in halted.members if m.wave != 0} == {MemberState.PENDING.value}
        eventually(
            lambda: snapshot(prov_db)[canary.stack_name].status == "ready", 120, 0.5, what="the rollback"
        )
        rolled = snapshot(prov_db)
        assert rolled[canary.stack_name].openclaw_image == image
        assert running_image(cloud_sandbox, rolled[canary.stack_name].server_id) == image
        untouched = [n for n in names if n != canary.stack_name]
        assert all(rolled[n].generation == after[n].generation for n in untouched)
        with prov_db.sessions() as session:
            alerts = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "rollout_halted")).all()
            assert [a.to_address for a in alerts] == ["ops@example.com"]
        with prov_db.session() as session:
            driver.abort(session, broken, "operator:test")
        assert {m.state for m in rollout_of(prov_db, broken).members if m.wave != 0} == {"skipped"}
    finally:
        worker.shutdown()
        worker.wait()

    # A worker host dies mid-wave; another one resumes and finishes, no server is duplicated.
    # (Six instances: canary, then waves of 1, 1 and 3.)
    killed = names[:6]
    last = approved(reconciler, LAST, cohort="list:" + ",".join(killed))
    env = {**os.environ, **prov_env}
    command = [sys.executable, "-m", "clawdet.cli", "worker", "--concurrency", "2", "--scan-interval", "0"]
    command += ["--lease-seconds", "8", "--ready-deadline", "30", "--rollout-interval", "0.3"]
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def mid_wave() -> bool:
            states = [m.state for m in rollout_of(prov_db, last).members]
            return states.count("passed") >= 2 and "updating" in states

        eventually(mid_wave, 300, 0.2, what="a wave under way")
        kill_machine(first)
    finally:
        if first.poll() is None:
            first.kill()
    second = workers(prov_settings, prov_db).start()
    try:
        finished = until_settled(prov_db, last, 600)
    finally:
        second.shutdown()
        second.wait()
    assert finished.status == RolloutStatus.COMPLETED.value, finished.message
    assert {m.state for m in finished.members} == {MemberState.PASSED.value}
    final = snapshot(prov_db)
    for name in killed:
        [server] = servers_named(cloud_sandbox, name)
        assert str(server["id"]) == final[name].server_id == before[name].server_id
        assert final[name].status == "ready" and final[name].openclaw_image == LAST
