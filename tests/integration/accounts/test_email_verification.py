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


def _age(database, email: str, by: timedelta) -> None:
    with database.session() as session:
        user = session.query(User).filter_by(email=email).one()
        user.created_at = user.email_set_at = utcnow() - by


def _new_client(app) -> JsonClient:
    return JsonClient(app.test_client())


def _x_account(database, email: str) -> str:
    """An X sign-up that typed someone else's address at the details step."""
    with database.session() as session:
        user = User(x_id="x-4242", x_username="squatter", name="Squatter", terms_accepted_at=utcnow())
        verification.set_email(user, email)
        session.add(user)
        session.flush()
        return user.id


OWNER = {"name": "Owner", "email": "victim@example.com", "password": "owner pass 12"}


def test_an_x_sign_up_cannot_squat_an_address_past_its_first_day(app, database):
    squatter_id = _x_account(database, "victim@example.com")
    owner = _new_client(app)
    taken = owner.post("/api/auth/register", json=OWNER)
    assert taken.status_code == 409 and taken.get_json()["error"]["code"] == "email_taken"

    _age(database, "victim@example.com", verification.WINDOW + timedelta(minutes=1))
    register(owner, **OWNER)
    holder = _user(database, "victim@example.com")
    assert holder.name == "Owner" and holder.email_verified is False
    with database.sessions() as session:
        squatter = session.get(User, squatter_id)
        assert squatter.email is None and not squatter.details_complete  # asked for an address again


def test_an_account_that_signs_in_with_its_address_never_loses_it(app, database):
    """A slow owner (the link in the spam folder) is never locked out of their own account."""
    register(_new_client(app), **OWNER)
    _age(database, "victim@example.com", timedelta(days=30))
    other = _new_client(app)
    assert other.post("/api/auth/register", json=OWNER | {"name": "Other"}).status_code == 409
    credentials = {"email": OWNER["email"], "password": OWNER["password"]}
    assert _new_client(app).post("/api/auth/login", json=credentials).status_code == 200


def test_a_verified_address_blocks_for_good(app, client, database, settings):
    register(client, email="kept@example.com")
    _confirm(client, settings, database, "kept@example.com")
    done = client.post("/api/auth/verify-email/resend")
    assert done.status_code == 409 and done.get_json()["error"]["code"] == "nothing_to_verify"
    _age(database, "kept@example.com", timedelta(days=400))
    other = _new_client(app)
    taken = other.post(
        "/api/auth/register", json={"name": "Other", "email": "kept@example.com", "password": "other pass 12"}
    )
    assert taken.status_code == 409


def _confirm(client, settings, database, email):
    """Open the emailed link, then press its button (opening it alone confirms nothing)."""
    path = verification.link(settings.secret_key, settings.public_url, _user(database, email))
    path = path.removeprefix(settings.public_url)
    page = client.client.get(path)
    assert page.status_code == 200 and "Confirm my email address" in page.get_data(as_text=True)
    assert _user(database, email).email_verified is False
    done = client.post(path)
    assert done.status_code == 200 and "Your email is confirmed" in done.get_data(as_text=True)
    return done


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
        late = client.post(f"/verify-email/{expired}")
    finally:
        itsdangerous.timed.time.time = real_time
    assert late.status_code == 410 and "has expired" in late.get_data(as_text=True)
    _confirm(client, settings, database, "second@example.com")
    assert _user(database, "second@example.com").email_verified is True


def test_a_new_link_on_request_is_rate_limited(client, database, settings):
    register(client, email="again@example.com")
    assert mail_triggers.queue_verifications(settings, database) == 1
    assert mail_triggers.queue_verifications(settings, database) == 0  # answered
    for _ in range(3):
        assert client.post("/api/auth/verify-email/resend").status_code == 202
    assert client.post("/api/auth/verify-email/resend").status_code == 429
    assert mail_triggers.queue_verifications(settings, database) == 1  # one link answers them all
    with database.sessions() as session:
        kinds = [row.kind for row in session.query(OutboxEmail).order_by(OutboxEmail.id)]
    assert kinds == ["verify_email"] * 2


def test_changing_the_address_cannot_mail_strangers_without_end(client, database, settings):
    register(client, email="first@example.com")
    for n in range(12):
        changed = client.post(
            "/api/auth/details", json={"email": f"stranger{n}@example.com", "acceptTerms": True}
        )
        assert changed.status_code in (200, 429)
        mail_triggers.queue_verifications(settings, database)
    with database.sessions() as session:
        sent = session.query(OutboxEmail).filter_by(kind="verify_email").count()
    assert sent == mail_triggers.VERIFY_PER_DAY


def test_an_x_sign_up_gets_one_link_for_the_address_it_types(database, settings):
    from db import audit

    with database.session() as session:
        user = User(x_id="x-77", x_username="newcomer", name="Newcomer")
        session.add(user)
        session.flush()
        audit.record(session, "user.register", actor=user, target_type="user", target_id=user.id)
        verification.set_email(user, "newcomer@example.com")
        audit.record(session, "user.email_changed", actor=user, target_type="user", target_id=user.id)
    assert mail_triggers.queue_verifications(settings, database) == 1
    assert mail_triggers.queue_verifications(settings, database) == 0
