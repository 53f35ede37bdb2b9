"""The admin console: closed to everyone but admins (every route, from the URL map), and every
action audited."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from clawdet.accounts.free_beta import free_beta_full
from db.models import AuditLog, Instance, User
from tests.fixtures.database import register
from tests.fixtures.ops import make_admin


def admin_routes(app) -> list[tuple[str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin"):
            continue
        path = re.sub(r"<[^>]+>", "x", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, path))
    return routes


def test_the_console_has_the_routes_this_test_guards(app):
    paths = {path for _, path in admin_routes(app)}
    assert {"/admin/", "/admin/users", "/admin/instances", "/admin/queue", "/admin/usage"} <= paths
    assert len(admin_routes(app)) >= 12


@pytest.mark.parametrize("who", ["anonymous", "user"])
def test_every_admin_route_is_hidden_from_non_admins(app, client, who):
    if who == "user":
        register(client, email="mallory@example.com")
    for method, path in admin_routes(app):
        response = client._send(method.lower(), path) if method != "GET" else client.get(path)
        assert response.status_code in (403, 404), (method, path, response.status_code)
        assert b"Free beta" not in response.data


def _audit(database, action):
    with database.sessions() as session:
        return session.scalars(select(AuditLog).where(AuditLog.action == action)).all()


def test_disabling_a_user_ends_sessions_and_removes_instances(app, database, settings, make_client):
    victim_client = make_client()
    victim = register(victim_client, email="victim@example.com")
    created = victim_client.post("/api/instances", json={"subdomain": "victim"})
    assert created.status_code == 202
    admin_client = make_client()
    admin = make_admin(database, admin_client)

    page = admin_client.get("/admin/users?q=victim")
    assert (
        page.status_code == 200
        and b"victim@example.com" in page.data
        and b"root@example.com" not in page.data
    )
    done = admin_client.post(f"/admin/users/{victim['id']}/disable", data={})
    assert done.status_code == 302
    assert victim_client.get("/api/auth/me").status_code == 401  # the session ended
    with database.sessions() as session:
        user = session.get(User, victim["id"])
        [instance] = user.instances
        assert user.disabled and instance.desired_state == "destroyed"
    [entry] = _audit(database, "admin.user.disable")
    assert entry.actor_user_id == admin["id"] and entry.details["instances_destroyed"] == [instance.id]
    assert _audit(database, "instance.destroy")[0].actor_user_id == admin["id"]
    refused = victim_client.post(
        "/api/auth/login", json={"email": "victim@example.com", "password": "correct horse"}
    )
    assert refused.status_code == 403

    assert admin_client.post(f"/admin/users/{admin['id']}/disable").status_code == 409


def test_mark_paid_and_make_admin_are_audited(database, make_client):
    admin_client = make_client()
    make_admin(database, admin_client)
    with database.session() as session:
        bob = User(email="bob@example.com", name="Bob")
        session.add(bob)
    assert (
        admin_client.post(f"/admin/users/{bob.id}/mark-paid", data={"payment_method": "paypal"}).status_code
        == 302
    )
    assert (
        admin_client.post(f"/admin/users/{bob.id}/mark-paid", data={"payment_method": "gold"}).status_code
        == 400
    )
    assert admin_client.post(f"/admin/users/{bob.id}/make-admin").status_code == 302
    with database.sessions() as session:
        bob = session.get(User, bob.id)
        assert bob.paid and bob.payment_method == "paypal" and bob.is_admin
    assert _audit(database, "admin.user.mark_paid")[0].details == {"payment_method": "paypal"}
    assert len(_audit(database, "admin.user.make_admin")) == 1


def test_instance_actions_queue_work_and_are_audited(database, make_client):
    owner = make_client()
    register(owner, email="olga@example.com")
    instance_id = owner.post("/api/instances", json={"subdomain": "olga"}).get_json()["instance"]["id"]
    admin_client = make_admin_client = make_client()
    make_admin(database, make_admin_client)

    detail = admin_client.get(f"/admin/instances/{instance_id}")
    assert detail.status_code == 200 and b"olga" in detail.data and b"requested" in detail.data
    with database.session() as session:  # as if a worker had made it ready
        row = session.get(Instance, instance_id)
        row.status, row.observed_generation = "ready", row.generation
    assert admin_client.post(f"/admin/instances/{instance_id}/reconcile").status_code == 302
    with database.sessions() as session:
        assert session.get(Instance, instance_id).requested_action == "repair"
    busy = admin_client.post(f"/admin/instances/{instance_id}/rebuild")
    assert busy.status_code == 409  # one operation at a time
    with database.session() as session:
        session.get(Instance, instance_id).requested_action = None
    assert admin_client.post(f"/admin/instances/{instance_id}/rebuild").status_code == 302
    assert admin_client.post(f"/admin/instances/{instance_id}/destroy").status_code == 302
    with database.sessions() as session:
        assert session.get(Instance, instance_id).desired_state == "destroyed"
    for action in ("admin.instance.reconcile", "admin.instance.rebuild", "admin.instance.destroy"):
        assert len(_audit(database, action)) == 1, action
    queue = admin_client.get("/admin/queue")
    assert queue.status_code == 200 and b"olga" in queue.data and b"destroy" in queue.data


def test_overview_shows_the_free_beta_cap_and_usage(database, settings, make_client):
    import dataclasses

    admin_client = make_client()
    make_admin(database, admin_client)
    for n in range(2):
        register(make_client(), email=f"beta{n}@example.com")
    page = admin_client.get("/admin/")
    assert page.status_code == 200
    assert re.search(rb"3 of 50 free beta places taken", page.data), page.data
    with database.sessions() as session:
        assert not free_beta_full(session, settings)
        assert free_beta_full(session, dataclasses.replace(settings, free_beta_cap=3))
    assert admin_client.get("/admin/usage").status_code == 200
    assert admin_client.get("/admin/instances?status=ready").status_code == 200


def test_overview_lists_the_warm_pool_with_its_price(database, make_client):
    from db.models import PoolServer
    from programs import tiers

    admin_client = make_client()
    make_admin(database, admin_client)
    with database.session() as session:
        for status in ("ready", "creating", "adopted"):
            session.add(
                PoolServer(
                    tier="free",
                    region="hel1",
                    server_image="4711",
                    openclaw_image="x",
                    status=status,
                    message="",
                )
            )
    page = admin_client.get("/admin/").get_data(as_text=True)
    section = page[page.index('id="warm-pool"') :]
    section = section[: section.index("</section>")]
    assert section.count("status-ready") == 1 and section.count("status-creating") == 1
    assert "status-adopted" not in section  # an adopted member is the instance's now
    each = tiers.monthly_cost_eur("free", "hel1")
    assert f"cost €{each * 2} a month" in section and "snapshot 4711" in section
    metrics = admin_client.get("/metrics").get_data(as_text=True)
    assert 'clawdet_warm_pool_servers{region="hel1",status="ready",tier="free"} 1.0' in metrics
