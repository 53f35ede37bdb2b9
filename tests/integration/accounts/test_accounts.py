"""Registration, sign-in, sessions and the details step, on SQLite and PostgreSQL."""

from datetime import timedelta

import bcrypt
from sqlalchemy import func, select

from db.models import AuditLog, User
from tests.fixtures.database import register


def count_users(database) -> int:
    with database.session() as s:
        return s.scalar(select(func.count(User.id)))


def test_register_signs_in_and_marks_free_beta(client, database):
    user = register(client, details=False)
    assert user["paid"] is True and user["paymentMethod"] == "free_beta"
    assert user["detailsComplete"] is False
    me = client.get("/api/auth/me").get_json()["user"]
    assert me["email"] == "alice@example.com"
    with database.session() as s:
        stored = s.scalar(select(User))
        assert stored.password_hash.startswith("$argon2id$")
        assert s.scalar(select(AuditLog.action).where(AuditLog.action == "user.register"))


def test_email_is_normalised_and_unique(client, make_client, database):
    register(client, email="Bob@Example.COM")
    other = make_client()
    response = other.post(
        "/api/auth/register", json={"name": "B", "email": " bob@example.com ", "password": "another pass"}
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "email_taken"
    assert count_users(database) == 1


def test_bad_input_gets_clear_errors_and_writes_nothing(client, database):
    cases = [
        ({"name": "A", "email": "not-an-email", "password": "long enough"}, "invalid_email"),
        ({"name": "A", "email": "a@example.com", "password": "short"}, "weak_password"),
        ({"name": "A", "email": "a@example.com", "password": "x" * 129}, "password_too_long"),
        ({"name": "", "email": "a@example.com", "password": "long enough"}, "name_required"),
    ]
    for body, code in cases:
        response = client.post("/api/auth/register", json=body)
        assert response.status_code == 400, body
        error = response.get_json()["error"]
        assert error["code"] == code and error["message"] and error["action"]
    response = client.post("/api/auth/register", data="[]", content_type="application/json")
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert count_users(database) == 0


def test_login_logout_and_wrong_password(client, make_client):
    register(client)
    client.post("/api/auth/logout")
    assert client.get("/api/auth/me").status_code == 401
    fresh = make_client()
    bad = fresh.post("/api/auth/login", json={"email": "alice@example.com", "password": "nope nope"})
    assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "invalid_credentials"
    unknown = fresh.post("/api/auth/login", json={"email": "who@example.com", "password": "nope nope"})
    assert unknown.get_json()["error"] == bad.get_json()["error"]  # no account enumeration
    ok = fresh.post("/api/auth/login", json={"email": "ALICE@example.com", "password": "correct horse"})
    assert ok.status_code == 200
    assert fresh.get("/api/auth/me").get_json()["user"]["email"] == "alice@example.com"


def test_csrf_is_required_for_json_and_forms(app, database):
    raw = app.test_client()
    response = raw.post(
        "/api/auth/register", json={"name": "A", "email": "a@example.com", "password": "long enough"}
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "csrf_failed"
    page = raw.post("/signup", data={"name": "A", "email": "a@example.com", "password": "long enough"})
    assert page.status_code == 400 and b"form expired" in page.data
    assert count_users(database) == 0


def test_register_rate_limit_per_ip(make_client):
    codes = []
    for n in range(6):
        c = make_client()
        codes.append(
            c.post(
                "/api/auth/register",
                json={"name": "N", "email": f"user{n}@example.com", "password": "long enough"},
            ).status_code
        )
    assert codes == [201] * 5 + [429]


def test_one_sign_in_rate_limit_per_ip_across_the_page_and_the_api(client, make_client):
    register(client)
    c = make_client()
    token = c.refresh_token()
    page = [
        c.client.post(
            "/login", data={"email": f"p{n}@example.com", "password": "whatever1", "csrf_token": token}
        )
        for n in range(5)
    ]
    api = [
        c.post("/api/auth/login", json={"email": f"x{n}@example.com", "password": "whatever1"}).status_code
        for n in range(6)
    ]
    assert [r.status_code for r in page] == [401] * 5 and api == [401] * 5 + [429]


def attempt(client, email: str, password: str, ip: str):
    return client.client.post(
        "/api/auth/login",
        json={"email": email, "password": password},
        headers={"X-CSRFToken": client.refresh_token()},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_sign_in_back_off_holds_up_the_guesser_never_the_owner(client, make_client):
    register(client)  # alice's own browser: it keeps its device cookie after signing out
    client.post("/api/auth/logout")
    guesser, prober = make_client(), make_client()
    codes = [attempt(guesser, "alice@example.com", "wrong pass", "10.0.0.9").status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
    locked = attempt(guesser, "alice@example.com", "correct horse", "10.0.0.9")
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    # An unknown email answers exactly alike: the back-off tells no account apart.
    for _ in range(5):
        attempt(prober, "nobody@example.com", "wrong pass", "10.0.0.10")
    unknown = attempt(prober, "nobody@example.com", "wrong pass", "10.0.0.10")
    assert (unknown.status_code, unknown.get_json()["error"]) == (429, locked.get_json()["error"])
    # The owner is never held up by it: not her own browser on the same address, not a new one elsewhere.
    assert attempt(client, "alice@example.com", "correct horse", "10.0.0.9").status_code == 200
    assert attempt(make_client(), "alice@example.com", "correct horse", "10.0.1.1").status_code == 200


def test_the_details_step_is_rate_limited(client):
    register(client)
    codes = [
        client.post(
            "/api/auth/details", json={"email": f"d{n}@example.com", "acceptTerms": False}
        ).status_code
        for n in range(10)
    ]
    assert codes == [400] * 9 + [429]  # register() took the details step once already


def test_revoking_sessions_signs_out_everywhere(client, make_client):
    register(client)
    laptop = make_client()
    assert (
        laptop.post(
            "/api/auth/login", json={"email": "alice@example.com", "password": "correct horse"}
        ).status_code
        == 200
    )
    assert client.post("/api/auth/sessions/revoke").status_code == 200
    assert laptop.get("/api/auth/me").status_code == 401
    assert client.get("/api/auth/me").status_code == 200  # the revoking session is renewed


def test_disabled_user_loses_session(client, database):
    register(client)
    with database.session() as s:
        s.scalar(select(User)).disabled = True
    assert client.get("/api/auth/me").status_code == 401


def test_bcrypt_hash_upgraded_to_argon2_on_login(client, database):
    legacy = bcrypt.hashpw(b"legacy password", bcrypt.gensalt(rounds=4)).decode()
    from db.models import utcnow

    with database.session() as s:
        s.add(
            User(
                id="user_legacy",
                email="old@example.com",
                password_hash=legacy,
                name="Old",
                terms_accepted_at=utcnow(),
            )
        )
    r = client.post("/api/auth/login", json={"email": "old@example.com", "password": "legacy password"})
    assert r.status_code == 200
    with database.session() as s:
        assert s.get(User, "user_legacy").password_hash.startswith("$argon2id$")
    client.post("/api/auth/logout")
    again = client.post("/api/auth/login", json={"email": "old@example.com", "password": "legacy password"})
    assert again.status_code == 200


def test_details_step_requires_terms_and_valid_email(client):
    register(client, details=False)
    no_terms = client.post("/api/auth/details", json={"email": "alice@example.com", "acceptTerms": False})
    assert no_terms.status_code == 400 and no_terms.get_json()["error"]["code"] == "terms_required"
    bad = client.post("/api/auth/details", json={"email": "nope", "acceptTerms": True})
    assert bad.get_json()["error"]["code"] == "invalid_email"
    ok = client.post("/api/auth/details", json={"email": "alice@example.com", "acceptTerms": True})
    assert ok.get_json()["user"]["detailsComplete"] is True


def form_token(page) -> str:
    return page.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()


def test_pages_flow_and_no_open_redirect(app):
    browser = app.test_client()
    token = form_token(browser.get("/signup"))
    r = browser.post(
        "/signup",
        data={"csrf_token": token, "name": "Pat", "email": "pat@example.com", "password": "long enough"},
    )
    assert r.status_code == 302 and r.headers["Location"].endswith("/signup/details")
    assert browser.get("/dashboard").headers["Location"].endswith("/signup/details")
    stale = browser.post(
        "/signup/details", data={"csrf_token": token, "email": "pat@example.com", "terms": "on"}
    )
    assert stale.status_code == 400  # signing in renewed the session and its token
    token = form_token(browser.get("/signup/details"))
    r = browser.post("/signup/details", data={"csrf_token": token, "email": "pat@example.com", "terms": "on"})
    assert r.headers["Location"].endswith("/dashboard")
    assert b"Free beta" in browser.get("/dashboard").data
    browser.post("/logout", data={"csrf_token": token})
    token = form_token(browser.get("/login"))
    r = browser.post(
        "/login",
        data={
            "csrf_token": token,
            "email": "pat@example.com",
            "password": "long enough",
            "next": "https://evil.test/x",
        },
    )
    assert r.status_code == 302 and r.headers["Location"] == "/dashboard"


def test_security_headers_and_cookie_flags(client):
    response = client.post(
        "/api/auth/register", json={"name": "A", "email": "a@example.com", "password": "long enough"}
    )
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(client, make_client):
    register(client)
    stolen = make_client()
    stolen.client.set_cookie("clawdet_session", client.client.get_cookie("clawdet_session").value)
    assert stolen.get("/api/auth/me").status_code == 200  # a copy works while the session lives
    other_device = make_client()
    other_device.post("/api/auth/login", json={"email": "alice@example.com", "password": "correct horse"})
    client.post("/api/auth/logout")
    assert stolen.get("/api/auth/me").status_code == 401
    assert other_device.get("/api/auth/me").status_code == 200  # only the ended session ends
    client.post("/api/auth/login", json={"email": "alice@example.com", "password": "correct horse"})
    earlier = client.client.get_cookie("clawdet_session").value
    client.post("/api/auth/login", json={"email": "alice@example.com", "password": "correct horse"})
    stolen.client.set_cookie("clawdet_session", earlier)
    assert stolen.get("/api/auth/me").status_code == 401  # signing in again ended the earlier session


def test_over_https_the_session_cookie_is_bound_to_the_host(settings, database):
    from dataclasses import replace

    from webapp import create_app

    secure = create_app(replace(settings, public_url="https://clawdet.example"), database, TESTING=False)
    browser, site = secure.test_client(), "https://clawdet.example"
    token = browser.get("/api/auth/csrf", base_url=site).get_json()["csrfToken"]
    response = browser.post(
        "/api/auth/register",
        json={"name": "A", "email": "a@example.com", "password": "long enough"},
        headers={"X-CSRFToken": token, "Referer": f"{site}/signup"},
        base_url=site,
    )
    assert response.status_code == 201, response.get_json()
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if "session=" in c)
    assert cookie.startswith("__Host-clawdet_session=") and "Secure" in cookie and "Path=/" in cookie
    assert "Domain=" not in cookie  # a customer's subdomain can neither read nor set it


def test_errors_are_json_for_api_and_pages_for_people(client):
    missing = client.get("/api/nope")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    page = client.get("/nope")
    assert page.status_code == 404 and b"There is nothing here" in page.data
    assert b"Traceback" not in page.data


def test_health_reports_database(client):
    response = client.get("/api/health")
    body = response.get_json()
    assert body["checks"]["database"]["ok"] is True
    # No worker checks the clouds for this app: degraded, yet it serves (ops/test_health.py).
    assert response.status_code == 200 and body["status"] == "degraded"


def test_free_beta_cap_puts_later_accounts_on_the_waitlist(settings, database):
    import dataclasses

    from tests.fixtures.database import JsonClient
    from webapp import create_app

    capped = create_app(dataclasses.replace(settings, free_beta_cap=1), database)
    first = register(JsonClient(capped.test_client()), email="one@example.com", details=False)
    second = register(JsonClient(capped.test_client()), email="two@example.com", details=False)
    assert first["paid"] is True and second["paid"] is False


def test_a_long_siege_neither_overflows_nor_unblocks(client, make_client, database):
    """Past 44 doublings a back-off would not fit a timedelta: it stays at its cap."""
    from db.models import LoginThrottle

    register(client)
    guesser = make_client()
    assert attempt(guesser, "alice@example.com", "wrong pass", "10.9.0.1").status_code == 401
    with database.session() as session:
        for row in session.query(LoginThrottle):
            row.failures, row.blocked_until = 60, None  # an attack that went on for days
    assert attempt(guesser, "alice@example.com", "wrong pass", "10.9.0.1").status_code == 401
    again = attempt(guesser, "alice@example.com", "wrong pass", "10.9.0.1")
    assert again.status_code == 429 and 0 < int(again.headers["Retry-After"]) <= 901


def test_guesses_sent_at_once_get_no_more_tries_than_guesses_in_a_row(client, make_client):
    """Hardening (issue 16, item 8): each attempt is counted before its password is hashed, so
    ten guesses in parallel from one address get the same five tries as ten in a row."""
    from concurrent.futures import ThreadPoolExecutor

    register(client)
    guessers = [make_client() for _ in range(10)]
    for guesser in guessers:
        guesser.refresh_token()
    with ThreadPoolExecutor(10) as pool:
        codes = list(
            pool.map(
                lambda g: attempt(g, "alice@example.com", "wrong pass", "10.7.0.1").status_code, guessers
            )
        )
    assert sorted(codes) == [401] * 5 + [429] * 5, codes
    assert attempt(client, "alice@example.com", "correct horse", "10.7.0.2").status_code == 200


def test_old_sign_in_failures_are_forgotten(database):
    from datetime import timedelta

    from clawdet.accounts import throttle
    from db.models import LoginThrottle, utcnow

    now = utcnow()
    with database.session() as session:
        session.add_all(
            [
                LoginThrottle(key="old", failures=3, updated_at=now - timedelta(hours=2)),
                LoginThrottle(key="recent", failures=3, updated_at=now - timedelta(minutes=5)),
                LoginThrottle(
                    key="still-held",
                    failures=60,
                    updated_at=now - timedelta(hours=2),
                    blocked_until=now + timedelta(minutes=1),
                ),
            ]
        )
    with database.session() as session:
        assert throttle.prune(session, now) == 1
    with database.sessions() as session:
        assert sorted(row.key for row in session.query(LoginThrottle)) == ["recent", "still-held"]


def test_limits_count_an_ipv6_subscriber_as_one_client(client, make_client):
    """Hardening (issue 16, item 8): one /64 is one subscriber's; walking through its addresses
    buys no more details lookups (or sign-ins, registrations)."""
    register(client)
    codes = [
        client.client.post(
            "/api/auth/details",
            json={"email": f"d{n}@example.com", "acceptTerms": False},
            headers={"X-CSRFToken": client.refresh_token()},
            environ_base={"REMOTE_ADDR": f"2001:db8:5:7::{n + 1:x}"},
        ).status_code
        for n in range(11)
    ]
    assert codes == [400] * 10 + [429]
    elsewhere = client.client.post(
        "/api/auth/details",
        json={"email": "d@example.com", "acceptTerms": False},
        headers={"X-CSRFToken": client.refresh_token()},
        environ_base={"REMOTE_ADDR": "2001:db8:5:8::1"},
    )
    assert elsewhere.status_code == 400  # another subscriber's /64 has its own budget


def test_signing_out_everywhere_makes_other_browsers_strangers_to_the_back_off(client, make_client, database):
    """A browser the owner used is not held up by an attack on her account, until she signs out
    everywhere: then only the browser she did it from still counts as hers."""
    from clawdet.accounts import throttle
    from db.models import LoginThrottle, utcnow

    register(client)
    laptop = make_client()
    assert attempt(laptop, "alice@example.com", "correct horse", "10.6.0.1").status_code == 200

    def under_attack() -> None:  # the account-wide key, held up by guesses from everywhere
        with database.session() as session:
            key = throttle.keys("alice@example.com", throttle.Client("ip:x"))[1][0]
            session.merge(
                LoginThrottle(
                    key=key, failures=99, updated_at=utcnow(), blocked_until=utcnow() + timedelta(minutes=5)
                )
            )

    under_attack()
    assert attempt(laptop, "alice@example.com", "correct horse", "10.6.0.1").status_code == 200
    assert client.post("/api/auth/sessions/revoke").status_code == 200
    under_attack()
    assert attempt(laptop, "alice@example.com", "correct horse", "10.6.0.1").status_code == 429
    assert attempt(client, "alice@example.com", "correct horse", "10.6.0.2").status_code == 200
