"""The day-two actions of the API: each a desired state the reconciler converges, refused in
plain words when it cannot be (another's instance, a busy one, a tier the plan does not allow, a
volume that would shrink), and the paused page only for a paused instance's own name."""

from clawdet.instances import credentials, lifecycle
from db.models import Instance, utcnow
from tests.fixtures.database import register


def created(client, database, subdomain="alice") -> str:
    register(client, email=f"{subdomain}@example.com")
    instance_id = client.post("/api/instances", json={"subdomain": subdomain}).get_json()["instance"]["id"]
    settle(database, instance_id, "ready")
    return instance_id


WORKER_ROOTS = credentials.Roots(gateway_tokens="g" * 43, credentials="c" * 43)


def settle(database, instance_id: str, status: str) -> None:
    """What a worker leaves behind: the key issued, the generation observed, the status settled."""
    with database.session() as session:
        row = session.get(Instance, instance_id)
        credentials.issue_llm_key(row, WORKER_ROOTS)
        row.observed_generation, row.status, row.requested_action = row.generation, status, None
        if status == "ready":
            row.ready_at = row.ready_at or utcnow()


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def test_each_action_is_accepted_once_and_converged_by_a_worker(client, database):
    instance_id = created(client, database)
    for action in ("restart", "rotate-token", "rotate-key", "reboot"):
        response = client.post(f"/api/instances/{instance_id}/{action}")
        assert response.status_code == 202, (action, response.get_json())
        assert response.get_json()["events"].endswith(f"/api/instances/{instance_id}/events")
        busy = client.post(f"/api/instances/{instance_id}/restart")
        assert busy.status_code == 409 and error_code(busy) == "operation_in_flight", action
        settle(database, instance_id, "ready")
    with database.sessions() as session:
        row = session.get(Instance, instance_id)
        assert (row.restarts, row.gateway_token_version, row.llm_key_version) == (1, 2, 2)
        assert row.llm_key_previous_hash  # the old key works until the new one is live


def test_pause_and_resume_follow_the_desired_state(client, database):
    instance_id = created(client, database)
    paused = client.post(f"/api/instances/{instance_id}/pause")
    assert paused.status_code == 202 and paused.get_json()["instance"]["desiredState"] == "paused"
    settle(database, instance_id, "paused")
    for refused in ("restart", "pause", "rotate-token"):
        response = client.post(f"/api/instances/{instance_id}/{refused}")
        assert response.status_code == 409 and error_code(response) == "wrong_state", refused
        assert "Resume it first" in response.get_json()["error"]["action"]
    assert client.patch(f"/api/instances/{instance_id}", json={"tier": "free"}).status_code == 409
    resumed = client.post(f"/api/instances/{instance_id}/resume")
    assert resumed.status_code == 202 and resumed.get_json()["instance"]["desiredState"] == "running"
    settle(database, instance_id, "ready")
    assert error_code(client.post(f"/api/instances/{instance_id}/resume")) == "wrong_state"


def test_nobody_acts_on_anothers_instance(client, make_client, database):
    instance_id = created(client, database)
    mallory = make_client()
    register(mallory, email="mallory@example.com", name="Mallory")
    for action in ("restart", "pause", "rotate-token", "rotate-key", "reboot", "rebuild"):
        response = mallory.post(f"/api/instances/{instance_id}/{action}")
        assert response.status_code == 404 and error_code(response) == "not_found", action
    assert mallory.patch(f"/api/instances/{instance_id}", json={"tier": "pro"}).status_code == 404
    with database.sessions() as session:
        row = session.get(Instance, instance_id)
        assert (row.generation, row.restarts, row.desired_state) == (1, 0, "running")


def test_a_tier_change_follows_the_plan_and_never_shrinks_the_volume(client, database):
    instance_id = created(client, database)  # a free-beta account: the free tier only
    response = client.patch(f"/api/instances/{instance_id}", json={"tier": "pro"})
    assert response.status_code == 422 and error_code(response) == "invalid_tier"
    assert error_code(client.patch(f"/api/instances/{instance_id}", json={})) == "nothing_to_change"
    with database.session() as session:
        row = session.get(Instance, instance_id)
        row.user.payment_method, row.user.paid = "stripe", True
    upgraded = client.patch(f"/api/instances/{instance_id}", json={"tier": "pro"})
    assert upgraded.status_code == 202 and upgraded.get_json()["instance"]["tier"] == "pro"
    settle(database, instance_id, "ready")
    shrink = client.patch(f"/api/instances/{instance_id}", json={"tier": "free"})
    assert shrink.status_code == 409 and error_code(shrink) == "volume_cannot_shrink"
    assert "never shrink" in shrink.get_json()["error"]["message"]


def test_get_shows_what_runs_on_the_instance(client, database):
    instance_id = created(client, database)
    with database.session() as session:
        row = session.get(Instance, instance_id)
        row.server_id, row.volume_id, row.config_hash = "41", "77", "0123456789abcdef"
        row.openclaw_image, row.image_pinned = "ghcr.io/openclaw/openclaw:2026.9.6", True
    body = client.get(f"/api/instances/{instance_id}").get_json()["instance"]
    assert (body["serverId"], body["volumeId"], body["configHash"]) == ("41", "77", "0123456789abcdef")
    assert (body["openclawVersion"], body["openclawPinned"]) == ("2026.9.6", True)
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert '2026.9.6 <span class="muted">(pinned by the operators)</span>' in dashboard


def test_the_paused_page_answers_only_for_a_paused_instances_name(client, app, database):
    instance_id = created(client, database, subdomain="napper")
    base = app.config["BASE_DOMAIN"]
    assert client.get("/", headers={"Host": f"napper.{base}"}).status_code == 200  # running: the app
    with database.session() as session:
        lifecycle.desired_changed(
            session,
            session.get(Instance, instance_id),
            "requested",
            "pause",
            desired=lifecycle.DesiredState.PAUSED,
        )
    page = client.get("/", headers={"Host": f"napper.{base}"})
    assert page.status_code == 503 and "napper is paused" in page.get_data(as_text=True)
    assert page.headers["Retry-After"]
    assert client.get("/", headers={"Host": f"someone-else.{base}"}).status_code == 200
    assert client.get("/", headers={"Host": f"a.napper.{base}"}).status_code == 200
