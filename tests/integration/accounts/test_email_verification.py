"""Hardening (issue 16, item 16): an address belongs to an account only once a link sent to it
was opened. Before that it gets nothing but the link, and it blocks nobody else for more than a
day, so an X sign-up cannot squat someone else's email (HTTP level, SQLite and PostgreSQL)."""

from datetime import timedelta

import itsdangerous

from clawdet.accounts import verification
from clawdet.mail import triggers as mail_triggers
from db.models import OutboxEmail, User, utcnow
from tests.fixtures.database import JsonClient, register


def _user(database, email: str) -> User | None:
    with database.sessions() as session:
        user = session.query(User).filter_by(email=email).one_or_none()
        if user is not None:
            session.expunge(user)
        return user


def _age_claim(database, email: str, by: timedelta) -> None:
    with database.session() as session:
        user = session.query(User).filter_by(email=email).one()
        user.email_set_at = utcnow() - by


def _new_client(app) -> JsonClient:
    return JsonClient(app.test_client())


def test_an_unverified_claim_blocks_a_registration_for_a_day_then_lapses(app, database):
    squatter = _new_client(app)
    register(squatter, email="victim@example.com", name="Squatter", password="squatter pass 1")
    owner = _new_client(app)
    taken = owner.post(
        "/api/auth/register",
        json={"name": "Owner", "email": "victim@example.com", "password": "owner pass 12"},
    )
    assert taken.status_code == 409 and taken.get_json()["error"]["code"] == "email_taken"

    _age_claim(database, "victim@example.com", verification.WINDOW + timedelta(minutes=1))
    register(owner, email="victim@example.com", name="Owner", password="owner pass 12")
    holder = _user(database, "victim@example.com")
    assert holder.name == "Owner" and holder.email_verified is False
    me = squatter.get("/api/auth/me").get_json()["user"]
    assert me["email"] is None and me["detailsComplete"] is False  # asked for an address again


def test_a_verified_address_blocks_for_good(app, client, database, settings):
    register(client, email="kept@example.com")
    _confirm(client, settings, database, "kept@example.com")
    done = client.post("/api/auth/verify-email/resend")
    assert done.status_code == 409 and done.get_json()["error"]["code"] == "nothing_to_verify"
    _age_claim(database, "kept@example.com", timedelta(days=400))
    other = _new_client(app)
    taken = other.post(
        "/api/auth/register", json={"name": "Other", "email": "kept@example.com", "password": "other pass 12"}
    )
    assert taken.status_code == 409


def _confirm(client, settings, database, email):
    link = verification.link(settings.secret_key, settings.public_url, _user(database, email))
    page = client.client.get(link.removeprefix(settings.public_url))
    assert page.status_code == 200, page.get_data(as_text=True)
    return page


def test_a_link_confirms_only_the_address_it_was_sent_to_and_only_for_a_day(client, database, settings):
    register(client, email="first@example.com")
    old_link = verification.link(
        settings.secret_key, settings.public_url, _user(database, "first@example.com")
    )
    changed = client.post("/api/auth/details", json={"email": "second@example.com", "acceptTerms": True})
    assert changed.status_code == 200
    json_only = {"Accept": "application/json"}
    stale = client.client.get(old_link.removeprefix(settings.public_url), headers=json_only)
    assert stale.status_code == 400 and stale.get_json()["error"]["code"] == "verification_link_invalid"
    forged = client.client.get("/verify-email/not-a-token", headers=json_only)
    assert forged.status_code == 400
    assert _user(database, "second@example.com").email_verified is False

    user = _user(database, "second@example.com")
    expired = verification.link(settings.secret_key, settings.public_url, user).rsplit("/", 1)[1]

    real_time = itsdangerous.timed.time.time
    try:
        itsdangerous.timed.time.time = lambda: real_time() + verification.WINDOW.total_seconds() + 60
        late = client.client.get(f"/verify-email/{expired}")
    finally:
        itsdangerous.timed.time.time = real_time
    assert late.status_code == 410 and "has expired" in late.get_data(as_text=True)
    _confirm(client, settings, database, "second@example.com")
    assert _user(database, "second@example.com").email_verified is True


def test_a_new_link_on_request_is_rate_limited(client, database, settings):
    register(client, email="again@example.com")
    mail_triggers.queue_verifications(settings, database)
    for _ in range(3):
        assert client.post("/api/auth/verify-email/resend").status_code == 202
    assert client.post("/api/auth/verify-email/resend").status_code == 429
    assert mail_triggers.queue_verifications(settings, database) == 3
    with database.sessions() as session:
        kinds = [row.kind for row in session.query(OutboxEmail).order_by(OutboxEmail.id)]
    assert kinds == ["verify_email"] * 4
