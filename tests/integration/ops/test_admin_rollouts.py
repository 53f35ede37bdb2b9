"""The admin console's rollout pages: the list, a rollout's waves and members, the halted banner,
the buttons (through clawdet.rollouts.driver, which audits them) and the rollout gauges of
/metrics. The rows are written directly: no engine, no worker."""

from __future__ import annotations

import re

from sqlalchemy import select

from clawdet.ops import metrics as ops_metrics
from db.models import AuditLog, Instance, Rollout, utcnow
from tests.fixtures.database import register
from tests.fixtures.ops import make_admin
from tests.fixtures.rollouts import NEW, OLD, add_members, ready_fleet
from tests.integration.ops.test_metrics import scrape, value


def fleet(database, *names: str) -> dict[str, str]:
    """Ready instances on OLD, one owner each: stack name -> instance id."""
    return dict(zip(names, ready_fleet(database, list(names)), strict=True))


def make_rollout(database, members: dict[str, tuple[int, str]], status: str, message: str = "") -> str:
    """A rollout of NEW over `members` (instance id -> (wave, state)), as a plan stores it."""
    with database.session() as session:
        rollout = Rollout(
            image=NEW,
            cohort="unpinned",
            status=status,
            waves=[1, 50, 100],
            totals={"update": sum(wave >= 0 for wave, _ in members.values()), "no change": 1},
            message=message,
            created_by="operator:test",
            started_at=None if status == "planned" else utcnow(),
        )
        session.add(rollout)
        session.flush()
        add_members(session, rollout, [(i, wave, state) for i, (wave, state) in members.items()])
        return rollout.id


def status_of(database, rollout_id: str) -> str:
    with database.sessions() as session:
        return session.get(Rollout, rollout_id).status


def admin(database, make_client):
    client = make_client()
    return client, make_admin(database, client)


def test_the_list_and_a_rollouts_page_show_its_waves_and_members(database, make_client):
    client, _ = admin(database, make_client)
    ids = fleet(database, "can", "w1a", "w1b", "w2a", "same")
    rollout_id = make_rollout(
        database,
        {
            ids["can"]: (0, "passed"),
            ids["w1a"]: (1, "passed"),
            ids["w1b"]: (1, "updating"),
            ids["w2a"]: (2, "pending"),
            ids["same"]: (-1, "skipped"),
        },
        "running",
        message="wave 1 (updating): 2 started",
    )
    listing = client.get("/admin/rollouts").get_data(as_text=True)
    row = re.search(rf'<tr data-rollout="{rollout_id}">.*?</tr>', listing, re.S).group(0)
    assert "2026.9.7" in row and "unpinned" in row and "running" in row and "operator:test" in row
    assert "wave 1 (updating): 2 started" in row
    assert 'href="/admin/rollouts"' in client.get("/admin/").get_data(as_text=True)  # the nav

    page = client.get(f"/admin/rollouts/{rollout_id}").get_data(as_text=True)
    waves = re.findall(r'<tr data-wave="(\d+)"><td>([^<]+)</td><td>(\d+)</td>', page)
    assert waves == [("0", "canary", "1"), ("1", "wave 1", "2"), ("2", "wave 2", "1")]  # not the skipped one
    wave_1 = re.search(r'<tr data-wave="1">.*?</tr>', page, re.S).group(0)
    assert '<rect class="passed" x="0.00" y="0" width="50.00"' in wave_1
    assert '<rect class="updating" x="50.00" y="0" width="50.00"' in wave_1
    assert "1 passed · 1 updating" in wave_1
    assert "Plan: no change 1 · update 4" in page
    assert "Canary 1 · waves 1, 50, 100 % · soak 300 s" in page and "replacing servers refused" in page
    for name, instance_id in ids.items():
        assert f'<a href="/admin/instances/{instance_id}">{name}</a>' in page
    member = re.search(r'<tr data-member="w1a">.*?</tr>', page, re.S).group(0)
    assert "wave 1" in member and "passed" in member and "the gateway answered" in member
    assert ">Pause<" in page and ">Abort<" in page and ">Start<" not in page and ">Resume<" not in page


def test_a_halted_rollout_shows_a_banner_with_the_next_step(database, make_client):
    client, _ = admin(database, make_client)
    ids = fleet(database, "can", "rest")
    make_rollout(database, {ids["can"]: (0, "passed"), ids["rest"]: (1, "passed")}, "completed")
    assert "rollout-halted" not in client.get("/admin/").get_data(as_text=True)
    halted = make_rollout(
        database,
        {ids["can"]: (0, "rolled_back"), ids["rest"]: (1, "pending")},
        "halted",
        message="Halted: the canary can failed its health gate; each failed instance was rolled back.",
    )
    for path in ("/admin/", "/admin/rollouts", f"/admin/rollouts/{halted}"):
        page = client.get(path).get_data(as_text=True)
        [banner] = re.findall(r'<div class="alert rollout-halted".*?</div>', page, re.S)
        assert f"Rollout {halted} (OpenClaw 2026.9.7) halted" in banner
        assert "the canary can failed its health gate" in banner and "Next step" in banner
        assert f'href="/admin/rollouts/{halted}"' in banner
    assert ">Abort<" in client.get(f"/admin/rollouts/{halted}").get_data(as_text=True)


def test_rollout_pages_are_hidden_from_non_admins(database, make_client):
    ids = fleet(database, "solo")
    rollout_id = make_rollout(database, {ids["solo"]: (0, "pending")}, "running")
    user = make_client()
    register(user, email="mallory@example.com")
    assert user.get("/admin/rollouts").status_code == 404
    assert user.get(f"/admin/rollouts/{rollout_id}").status_code == 404
    assert user.post(f"/admin/rollouts/{rollout_id}/abort").status_code == 404
    assert status_of(database, rollout_id) == "running"


def test_the_buttons_move_a_rollout_and_a_refused_move_is_a_flash(database, make_client):
    client, me = admin(database, make_client)
    ids = fleet(database, "can", "rest")
    rollout_id = make_rollout(database, {ids["can"]: (0, "passed"), ids["rest"]: (1, "pending")}, "running")
    url = f"/admin/rollouts/{rollout_id}"

    paused = client.post(f"{url}/pause")
    assert paused.status_code == 302 and paused.headers["Location"].endswith(url)
    page = client.get(url).get_data(as_text=True)
    assert status_of(database, rollout_id) == "paused" and "nothing new starts" in page and ">Resume<" in page

    client.post(f"{url}/pause")
    refused = client.get(url).get_data(as_text=True)
    assert f'<p class="alert" role="alert">Rollout {rollout_id} is paused; pause needs it running' in refused
    assert status_of(database, rollout_id) == "paused"

    client.post(f"{url}/resume")
    assert status_of(database, rollout_id) == "running"
    client.post(f"{url}/abort")
    with database.sessions() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout.status == "aborted" and rollout.finished_at is not None
        assert {m.stack_name: m.state for m in rollout.members} == {"can": "passed", "rest": "skipped"}
        actions = session.execute(
            select(AuditLog.action, AuditLog.actor)
            .where(AuditLog.target_id == rollout_id)
            .order_by(AuditLog.id)
        ).all()
    actor = f"user:{me['id']}"
    assert actions == [("rollout.pause", actor), ("rollout.resume", actor), ("rollout.abort", actor)]
    assert ">Abort<" not in client.get(url).get_data(as_text=True)
    assert client.post("/admin/rollouts/ro_nothing/pause").status_code == 404


def test_start_is_refused_when_the_fleet_changed_since_the_plan(database, make_client):
    client, _ = admin(database, make_client)
    ids = fleet(database, "can", "rest")
    rollout_id = make_rollout(database, {ids["can"]: (0, "pending"), ids["rest"]: (1, "pending")}, "planned")
    url = f"/admin/rollouts/{rollout_id}"
    assert ">Start<" in client.get(url).get_data(as_text=True)
    with database.session() as session:
        session.get(Instance, ids["rest"]).image_pinned = True
    client.post(f"{url}/start")
    page = client.get(url).get_data(as_text=True)
    assert "The fleet changed since plan" in page and "changed: rest" in page
    assert status_of(database, rollout_id) == "planned"
    with database.session() as session:
        session.get(Instance, ids["rest"]).image_pinned = False
    client.post(f"{url}/start")
    assert status_of(database, rollout_id) == "running"


def test_the_admin_instance_page_shows_the_desired_image_pin_and_rollout(database, make_client):
    client, _ = admin(database, make_client)
    ids = fleet(database, "pinny")
    with database.session() as session:
        instance = session.get(Instance, ids["pinny"])
        instance.desired_image, instance.image_pinned, instance.rollout_id = NEW, True, "ro_x"
    page = client.get(f"/admin/instances/{ids['pinny']}").get_data(as_text=True)
    line = re.search(r'<p id="instance-image">.*?</p>', page, re.S).group(0)
    assert f"runs {OLD}" in line and f"desired {NEW}" in line and "pinned by the operators" in line
    assert 'href="/admin/rollouts/ro_x"' in line


def test_metrics_show_rollouts_by_status_and_the_members_of_unfinished_ones(database, client):
    ids = fleet(database, "can", "rest")
    members = {ids["can"]: (0, "passed"), ids["rest"]: (1, "updating")}
    running = make_rollout(database, members, "running")
    halted = make_rollout(database, members, "halted")
    done = make_rollout(database, members, "completed")
    with database.session() as session:
        ops_metrics.increment(session, "clawdet_rollout_instances_total", {"outcome": "rolled_back"})
    families = scrape(client)
    rollouts = families["clawdet_rollouts"]
    counts = {
        s: value(rollouts, "clawdet_rollouts", status=s) for s in ("running", "halted", "completed", "paused")
    }
    assert counts == {"running": 1, "halted": 1, "completed": 1, "paused": 0}
    members_gauge = families["clawdet_rollout_members"]
    for rollout_id in (running, halted):
        assert value(members_gauge, "clawdet_rollout_members", rollout=rollout_id, state="passed") == 1
        assert value(members_gauge, "clawdet_rollout_members", rollout=rollout_id, state="updating") == 1
    assert not [s for s in members_gauge if s.labels["rollout"] == done]
    counter = families["clawdet_rollout_instances"]
    assert value(counter, "clawdet_rollout_instances_total", outcome="rolled_back") == 1
