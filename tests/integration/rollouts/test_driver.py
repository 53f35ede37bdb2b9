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


def planned(
    database, ids: list[str], *, soak: int = 0, approve: bool = True, cohort: str = "unpinned"
) -> str:
    """A plan of `ids` in that order (waves of 1, 10, 25, 50, 100 % after one canary), approved."""
    with database.session() as session:
        rollout = Rollout(image=NEW, cohort=cohort, waves=[1, 10, 25, 50, 100], soak_seconds=soak)
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
    from tests.fixtures.provisioning import pinned
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
    by_tag = clawdet(["instance", "pin", "i00", "--version", "2026.9.9"], database_url, tmp_path)
    assert by_tag.returncode == 1 and "not pinned by digest" in by_tag.stderr  # real servers
    release = pinned("ghcr.io/openclaw/openclaw:2026.9.9")
    by_digest = clawdet(["instance", "pin", "i00", "--version", release], database_url, tmp_path)
    assert by_digest.returncode == 0, by_digest.stderr
    with database.sessions() as session:
        row = session.get(Instance, ids[0])
        assert row.image_pinned and row.desired_image == release
    latest = clawdet(["instance", "pin", "i01", "--version", "latest"], database_url, tmp_path)
    assert latest.returncode != 0 and "not pinned" in latest.stderr


def test_a_halt_calls_off_the_updates_no_worker_began(database):
    ids = fleet(database, 10)
    rollout_id = planned(database, ids)
    step(database, rollout_id)
    [canary] = updating(database, rollout_id)
    gate(database, canary)
    assert step(database, rollout_id) == 2  # the 25 % wave
    failing, claimed = updating(database, rollout_id)
    with database.session() as session:
        session.get(Instance, claimed).lease_owner = "a-worker"  # begun: it finishes behind its gate
    gate(database, failing, ok=False)
    assert step(database, rollout_id) == 0
    with database.sessions() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout.status == "halted"
        members = {m.instance_id: m.state for m in rollout.members}
        assert members[failing] == "rolled_back" and members[claimed] == "updating"
        assert list(members.values()).count("pending") == 7
        assert session.get(Instance, claimed).desired_image == NEW
    with database.session() as session:
        driver.abort(session, rollout_id, "test")
    gate(database, claimed)  # its worker's gate passes after the abort: it stays on NEW
    with database.sessions() as session:
        assert {m.state for m in session.get(Rollout, rollout_id).members} == {
            "passed",
            "rolled_back",
            "skipped",
        }
        assert session.get(Instance, claimed).rollout_id is None


def test_pausing_sends_queued_updates_back_to_waiting(database):
    ids = fleet(database, 3)
    rollout_id = planned(database, ids)
    step(database, rollout_id)
    [canary] = updating(database, rollout_id)
    with database.session() as session:
        driver.pause(session, rollout_id, "test")
    with database.sessions() as session:
        row = session.get(Instance, canary)
        assert (row.desired_image, row.rollout_id) == (OLD, None)
        assert {m.state for m in session.get(Rollout, rollout_id).members} == {"pending"}
    with database.session() as session:
        lifecycle.ready(session.get(Instance, canary), 2)  # a worker's no-op converge
        driver.resume(session, rollout_id, "test")
    assert step(database, rollout_id) == 1 and updating(database, rollout_id) == [canary]


def test_a_canary_that_leaves_is_replaced_and_keeps_its_old_image(database):
    ids = fleet(database, 5)
    rollout_id = planned(database, ids, soak=3600)
    step(database, rollout_id)
    [canary] = updating(database, rollout_id)
    with database.session() as session:
        row = session.get(Instance, canary)
        row.desired_state = "paused"  # the owner paused it mid-update
        session.get(Instance, ids[4]).desired_state = "destroyed"  # another one goes away
    assert step(database, rollout_id) == 1  # a new canary, no wave and no soak skipped
    with database.sessions() as session:
        assert session.get(Instance, canary).desired_image == OLD
        rollout = session.get(Rollout, rollout_id)
        [new_canary] = [m for m in rollout.members if m.state == "updating"]
        assert new_canary.wave == 0 and new_canary.instance_id != canary
    gate(database, new_canary.instance_id)
    later = utcnow() + timedelta(seconds=3601)
    while updating(database, rollout_id) or step(database, rollout_id, later):
        for instance_id in updating(database, rollout_id):
            gate(database, instance_id)
    found = states(database, rollout_id)
    assert found["i04"] == "skipped" and list(found.values()).count("passed") == 3
    with database.sessions() as session:
        assert session.get(Rollout, rollout_id).status == "completed"


def test_one_rollout_at_a_time_and_a_regression_during_the_soak_counts(database):
    ids = fleet(database, 4)
    first = planned(database, ids[:2], cohort="list:i00,i01")
    second = planned(database, ids[2:], approve=False, cohort="list:i02,i03")
    with database.session() as session, pytest.raises(UserFacingError) as refused:
        driver.start(session, second, "test")
    assert refused.value.code == "another_rollout"
    halts: list[str] = []
    step(database, first, halts=halts)
    [canary] = updating(database, first)
    gate(database, canary)
    with database.session() as session:
        session.get(Instance, canary).health = "unhealthy"  # the fleet scan saw it fall over
    step(database, first, halts=halts)
    assert halts == [first] and states(database, first)["i00"] == "rolled_back"
    with database.sessions() as session:
        row = session.get(Instance, canary)
        assert row.desired_image == OLD and row.status_message == "Going back to the version that worked"
