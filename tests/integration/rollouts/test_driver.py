"""A rollout's steps on the database alone (SQLite and PostgreSQL): waves in order with their soak,
the canary's failure halting it, approval refused for a changed fleet, pause, resume and abort,
a busy instance waited for and a pinned one left alone. The reconcilers' part (an update and its
gate) is played by hand here; tests/integration/rollouts/test_rollouts.py runs the real one."""

from datetime import timedelta

import pytest

from clawdet.errors import UserFacingError
from clawdet.instances import lifecycle
from clawdet.rollouts import MemberState, RolloutStatus, driver, outcome
from clawdet.rollouts.waves import assign
from db.models import Instance, Rollout, utcnow
from tests.fixtures.rollouts import NEW, OLD, add_members, ready_fleet


def fleet(database, count: int) -> list[str]:
    return ready_fleet(database, [f"i{n:02d}" for n in range(count)])


def planned(database, ids: list[str], *, soak: int = 0, approve: bool = True) -> str:
    """A plan of `ids` in that order (waves of 1, 10, 25, 50, 100 % after one canary), approved."""
    with database.session() as session:
        rollout = Rollout(image=NEW, cohort="unpinned", waves=[1, 10, 25, 50, 100], soak_seconds=soak)
        rollout.created_by = "test"
        session.add(rollout)
        session.flush()
        waves = assign(len(ids), 1, rollout.waves)
        add_members(session, rollout, [(i, wave, "pending") for i, wave in zip(ids, waves, strict=True)])
        if approve:
            driver.start(session, rollout.id, "test")
        return rollout.id


def step(database, rollout_id: str, now=None, halts: list | None = None) -> int:
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        on_halt = (lambda _session, r: halts.append(r.id)) if halts is not None else None
        return driver.step(session, rollout, now or utcnow(), on_halt)


def states(database, rollout_id: str) -> dict[str, str]:
    with database.sessions() as session:
        return {m.stack_name: m.state for m in session.get(Rollout, rollout_id).members}


def gate(database, instance_id: str, *, ok: bool = True) -> None:
    """A worker's update of the instance, and its gate's outcome."""
    with database.session() as session:
        instance = session.get(Instance, instance_id)
        assert instance.desired_image == NEW and instance.rollout_id is not None
        if ok:
            lifecycle.ready(instance, instance.generation)
            instance.openclaw_image = NEW
            outcome.passed(session, instance)
        else:
            outcome.rolled_back(session, instance, "the gateway did not answer /healthz within 60s")


def updating(database, rollout_id: str) -> list[str]:
    with database.sessions() as session:
        rollout = session.get(Rollout, rollout_id)
        return [m.instance_id for m in rollout.members if m.state == MemberState.UPDATING.value]


def test_a_rollout_goes_canary_then_wave_by_wave_after_each_soak(database):
    ids = fleet(database, 10)
    rollout_id = planned(database, ids, soak=60)
    assert step(database, rollout_id) == 1  # the canary alone
    assert step(database, rollout_id) == 0  # nothing more while it updates
    [canary] = updating(database, rollout_id)
    with database.sessions() as session:
        row = session.get(Instance, canary)
        assert row.generation == 2 and row.desired_image == NEW and lifecycle.in_flight(row)
    gate(database, canary)
    assert step(database, rollout_id) == 0  # soaking
    later = utcnow() + timedelta(seconds=61)
    started = [step(database, rollout_id, later)]
    while updating(database, rollout_id):
        for instance_id in updating(database, rollout_id):
            gate(database, instance_id)
        later += timedelta(seconds=61)
        started.append(step(database, rollout_id, later))
    assert started == [2, 2, 5, 0]  # of 10: the canary is 1 % and 10 %; 25 % is 3, 50 % 5, then all
    with database.sessions() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout.status == RolloutStatus.COMPLETED.value
        assert {m.state for m in rollout.members} == {MemberState.PASSED.value}
        assert {session.get(Instance, i).rollout_id for i in ids} == {None}


def test_a_failed_canary_rolls_back_and_halts_the_rest_untouched(database):
    ids = fleet(database, 5)
    rollout_id = planned(database, ids)
    halts: list[str] = []
    step(database, rollout_id, halts=halts)
    [canary] = updating(database, rollout_id)
    gate(database, canary, ok=False)
    with database.sessions() as session:
        row = session.get(Instance, canary)
        assert row.desired_image == OLD and row.rollout_id is None and row.generation == 3  # rolling back
        assert row.status_message == "Going back to the version that worked"
    assert step(database, rollout_id, halts=halts) == 0
    assert halts == [rollout_id]
    with database.sessions() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout.status == RolloutStatus.HALTED.value and "canary" in rollout.message
        others = [session.get(Instance, i) for i in ids if i != canary]
        assert {(o.generation, o.desired_image) for o in others} == {(1, OLD)}
    with database.session() as session:
        driver.abort(session, rollout_id, "test")
    assert sorted(states(database, rollout_id).values()) == ["rolled_back"] + ["skipped"] * 4


def test_approval_is_refused_when_the_fleet_changed_since_the_plan(database):
    ids = fleet(database, 3)
    rollout_id = planned(database, ids, approve=False)
    with database.session() as session:
        session.get(Instance, ids[1]).requested_action = "repair"  # the fleet scan found drift
    with database.session() as session, pytest.raises(UserFacingError) as refused:
        driver.start(session, rollout_id, "test")
    assert refused.value.code == "fleet_changed" and "changed: i01" in refused.value.message
    with database.session() as session:
        session.get(Instance, ids[1]).requested_action = None
    with database.session() as session:
        assert driver.start(session, rollout_id, "test").status == RolloutStatus.RUNNING.value


def test_pause_resume_and_a_busy_or_pinned_instance(database):
    ids = fleet(database, 4)
    rollout_id = planned(database, ids)
    with database.session() as session:
        driver.pause(session, rollout_id, "test")
    assert step(database, rollout_id) == 0
    with database.session() as session, pytest.raises(UserFacingError):
        driver.pause(session, rollout_id, "test")  # paused already
    with database.session() as session:
        driver.resume(session, rollout_id, "test")
        canary = session.get(Instance, ids[0])
        canary.requested_action = "reboot"  # busy: waited for, not skipped
        session.get(Instance, ids[1]).image_pinned = True  # pinned after the plan: left alone
    assert step(database, rollout_id) == 0 and states(database, rollout_id)["i00"] == "pending"
    with database.session() as session:
        session.get(Instance, ids[0]).requested_action = None
    assert step(database, rollout_id) == 1
    gate(database, ids[0])
    step(database, rollout_id)
    found = states(database, rollout_id)
    assert found["i00"] == "passed" and found["i01"] == "skipped"
    with database.sessions() as session:
        assert session.get(Instance, ids[1]).desired_image == OLD


def test_the_cli_exit_codes_a_gitops_run_acts_on(database, database_url, tmp_path):
    from tests.integration.cli.test_cli import clawdet

    ids = fleet(database, 2)
    rollout_id = planned(database, ids)
    shown = clawdet(["rollout", "status", rollout_id], database_url, tmp_path)
    assert shown.returncode == 6 and "running" in shown.stdout and "canary" in shown.stdout
    with database.session() as session:
        assert driver.abort(session, rollout_id, "test").status == "aborted"
    assert clawdet(["rollout", "status", rollout_id], database_url, tmp_path).returncode == 5
    again = clawdet(["rollout", "start", rollout_id], database_url, tmp_path)
    assert again.returncode == 3 and "aborted" in again.stderr
    unknown = clawdet(["rollout", "pause", "ro_nope"], database_url, tmp_path)
    assert unknown.returncode == 1 and "No rollout is called" in unknown.stderr
    pinned = clawdet(["instance", "pin", "i00", "--version", "2026.9.9"], database_url, tmp_path)
    assert pinned.returncode == 0, pinned.stderr
    with database.sessions() as session:
        row = session.get(Instance, ids[0])
        assert row.image_pinned and row.desired_image == "ghcr.io/openclaw/openclaw:2026.9.9"
    latest = clawdet(["instance", "pin", "i01", "--version", "latest"], database_url, tmp_path)
    assert latest.returncode != 0 and "not pinned" in latest.stderr
