"""Recording the desired instance: validation, uniqueness, plans, and one user never seeing
another's rows."""

from sqlalchemy import func, select

from db.models import Instance, User
from tests.fixtures.database import register


def instances(database) -> int:
    with database.session() as s:
        return s.scalar(select(func.count(Instance.id)))


def test_create_returns_202_at_once_with_where_to_follow(client, database):
    register(client)
    r = client.post("/api/instances", json={"subdomain": "alice", "region": "fsn1"})
    assert r.status_code == 202
    body = r.get_json()["instance"]
    assert body["subdomain"] == "alice" and body["status"] == "pending" and body["region"] == "fsn1"
    assert body["desiredState"] == "running" and body["generation"] == 1
    assert r.headers["Location"] == f"/api/instances/{body['id']}"
    assert client.get(r.headers["Location"]).get_json()["instance"]["id"] == body["id"]


def test_subdomain_is_derived_when_not_chosen(client, make_client):
    register(client, name="Grace Hopper", email="grace@example.com")
    assert client.post("/api/instances", json={}).get_json()["instance"]["subdomain"] == "grace-hopper"
    other = make_client()
    register(other, name="Grace Hopper", email="grace2@example.com")
    assert other.post("/api/instances", json={}).get_json()["instance"]["subdomain"] == "grace-hopper-2"


def test_subdomain_validation(client, database):
    register(client)
    for bad in [
        "www",
        "api",
        "admin",
        "mail",
        "app",
        "-lead",
        "trail-",
        "has space",
        "UPPER_",
        "a" * 64,
        "xn--abc",
        "dot.ted",
    ]:
        r = client.post("/api/instances", json={"subdomain": bad})
        assert r.status_code == 400, bad
        error = r.get_json()["error"]
        assert error["code"] == "invalid_subdomain" and error["field"] == "subdomain" and error["action"]
    assert (
        client.post("/api/instances", json={"region": "mars1"}).get_json()["error"]["code"]
        == "invalid_region"
    )
    assert instances(database) == 0


def test_subdomain_unique_and_one_instance_per_user(client, make_client, database):
    register(client)
    assert client.post("/api/instances", json={"subdomain": "taken"}).status_code == 202
    again = client.post("/api/instances", json={"subdomain": "other"})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "instance_exists"
    bob = make_client()
    register(bob, email="bob@example.com", name="Bob")
    clash = bob.post("/api/instances", json={"subdomain": "TAKEN"})
    assert clash.status_code == 409 and clash.get_json()["error"]["code"] == "subdomain_taken"
    assert instances(database) == 1


def test_plan_rules(client, database):
    register(client)
    r = client.post("/api/instances", json={"tier": "enterprise"})
    assert r.status_code == 402 and r.get_json()["error"]["code"] == "tier_not_in_plan"
    with database.session() as s:
        s.scalar(select(User)).paid = False
    r = client.post("/api/instances", json={})
    assert r.status_code == 402 and r.get_json()["error"]["code"] == "payment_required"


def test_details_required_before_creating(client):
    register(client, details=False)
    r = client.post("/api/instances", json={})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "details_required"


def test_anonymous_gets_401(client):
    r = client.post("/api/instances", json={})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "not_signed_in"


def test_users_cannot_see_each_others_instances(client, make_client):
    register(client)
    mine = client.post("/api/instances", json={"subdomain": "alices"}).get_json()["instance"]["id"]
    bob = make_client()
    register(bob, email="bob@example.com", name="Bob")
    r = bob.get(f"/api/instances/{mine}")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    page = bob.get("/dashboard")
    assert b"alices" not in page.data


def test_dashboard_form_creates_and_shows_instance(app, database):
    browser = app.test_client()
    from tests.integration.accounts.test_accounts import form_token

    token = form_token(browser.get("/signup"))
    browser.post(
        "/signup",
        data={"csrf_token": token, "name": "Pat", "email": "pat@example.com", "password": "long enough"},
    )
    token = form_token(browser.get("/signup/details"))
    browser.post("/signup/details", data={"csrf_token": token, "email": "pat@example.com", "terms": "on"})
    bad = browser.post("/dashboard/instance", data={"csrf_token": token, "subdomain": "admin"})
    assert bad.status_code == 400 and b"reserved" in bad.data
    r = browser.post("/dashboard/instance", data={"csrf_token": token, "subdomain": "pats-claw"})
    assert r.status_code == 303
    page = browser.get("/dashboard").data
    assert b"pats-claw" in page and b"pending" in page


def test_two_requests_at_once_make_one_instance(database, settings):
    """Hardening (issue 16, item 4): the rule holds in the database, also on SQLite, where the
    row lock of PostgreSQL is not there. The second request checks before the first commits and
    must still lose when it writes."""
    import threading
    import time

    from clawdet.errors import UserFacingError
    from clawdet.instances.requests import request_instance
    from db.models import utcnow

    with database.session() as session:
        user = User(email="race@example.com", name="Race", terms_accepted_at=utcnow())
        user.mark_free_beta()
        session.add(user)
        session.flush()
        user_id = user.id

    first = database.sessions()
    request_instance(first, first.get(User, user_id), subdomain="first-one")
    committer = threading.Timer(0.5, first.commit)  # the first request finishes while the second writes
    committer.start()
    try:
        with database.session() as second:
            outcome = None
            try:
                request_instance(second, second.get(User, user_id), subdomain="second-one")
                second.commit()
            except UserFacingError as exc:
                outcome = exc.code
    finally:
        committer.join()
        first.close()
    time.sleep(0.1)
    assert outcome == "instance_exists"
    with database.sessions() as session:
        assert (
            session.scalar(select(func.count()).select_from(Instance).where(Instance.user_id == user_id)) == 1
        )
