"""Continue with X against the sandbox's X: sign-up, return, linking, and every refusal path,
on SQLite and PostgreSQL. Refusals must leave no user behind."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from clawdet.settings import Settings
from db.models import User
from tests.fixtures.database import register
from tests.fixtures.sandbox import start_sandbox

CODE_TTL = 2.0


@pytest.fixture(scope="module")
def x_sandbox(tmp_path_factory):
    box = start_sandbox(tmp_path_factory.mktemp("x-sandbox") / "state.json", x_code_ttl=CODE_TTL)
    yield box
    box.stop()


@pytest.fixture
def settings(tmp_path, database_url, x_sandbox) -> Settings:
    return Settings.from_env(
        {
            "CLAWDET_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": database_url,
            "SECRET_KEY": "x-test-secret",
            "PUBLIC_URL": "http://127.0.0.1:8000",
            "X_CLIENT_ID": x_sandbox.x_client_id,
            "X_CLIENT_SECRET": x_sandbox.x_client_secret,
            "X_AUTHORIZE_URL": x_sandbox.x_url + "/i/oauth2/authorize",
            "X_API_BASE_URL": x_sandbox.x_url,
        },
        dotenv=False,
    )


def count_users(database) -> int:
    with database.session() as s:
        return s.scalar(select(func.count(User.id)))


def start_at_x(client, link: bool = False) -> str:
    response = client.get("/api/auth/x/login" + ("?link=1" if link else ""))
    assert response.status_code == 302, response.data
    return response.headers["Location"]


def answer_of_x(authorize_url: str, decision: str = "approve", username: str = "sandbox_alice") -> str:
    """What X redirects the browser to, as a path for the test client."""
    response = httpx.get(
        f"{authorize_url}&sandbox_auto={decision}&sandbox_user={username}", follow_redirects=False, timeout=10
    )
    assert response.status_code in (302, 303), response.text
    parts = urlsplit(response.headers["Location"])
    assert parts.path == "/api/auth/x/callback"
    return f"{parts.path}?{parts.query}"


def sign_in_with_x(client, username: str):
    return client.get(answer_of_x(start_at_x(client), username=username))


def assert_refused(response, code: str, link: str = "/api/auth/x/login"):
    page = response.get_data(as_text=True)
    assert response.status_code >= 400
    assert f'data-code="{code}"' in page
    assert f'href="{link}"' in page  # a way to start again


def test_buttons_and_pkce_authorize_url(client, x_sandbox):
    for path in ("/login", "/signup"):
        assert 'id="continue-with-x"' in client.get(path).get_data(as_text=True)
    query = parse_qs(urlsplit(start_at_x(client)).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["client_id"] == [x_sandbox.x_client_id]
    assert "code_verifier" not in query and x_sandbox.x_client_secret not in str(query)


def test_new_user_via_x_goes_to_details_then_returns(client, make_client, database):
    response = sign_in_with_x(client, "new_xer")
    assert response.status_code == 302 and response.headers["Location"].endswith("/signup/details")
    me = client.get("/api/auth/me").get_json()["user"]
    assert me["xUsername"] == "new_xer" and me["email"] is None
    assert me["paid"] is True and me["paymentMethod"] == "free_beta" and not me["detailsComplete"]
    done = client.post("/api/auth/details", json={"email": "xer@example.com", "acceptTerms": True})
    assert done.status_code == 200 and done.get_json()["user"]["detailsComplete"]
    assert count_users(database) == 1

    again = make_client()
    back = sign_in_with_x(again, "new_xer")
    assert back.status_code == 302 and back.headers["Location"].endswith("/dashboard")
    assert again.get("/api/auth/me").get_json()["user"]["id"] == me["id"]
    assert count_users(database) == 1


def test_email_user_links_and_unlinks_x(client, database):
    register(client, email="linker@example.com")
    response = client.get(answer_of_x(start_at_x(client, link=True), username="linker_x"))
    assert response.status_code == 302 and response.headers["Location"].endswith("/account")
    assert 'id="x-link-status">@linker_x' in client.get("/account").get_data(as_text=True)
    assert count_users(database) == 1
    unlinked = client.post("/account/x/unlink")
    assert unlinked.status_code == 303
    assert client.get("/api/auth/me").get_json()["user"]["xUsername"] is None


def test_x_account_of_another_user_cannot_be_linked(client, make_client, database):
    sign_in_with_x(make_client(), "taken_x")
    register(client, email="second@example.com")
    response = client.get(answer_of_x(start_at_x(client, link=True), username="taken_x"))
    assert_refused(response, "x_already_linked", "/api/auth/x/login?link=1")
    assert client.get("/api/auth/me").get_json()["user"]["xUsername"] is None


def test_unlink_refused_when_x_is_the_only_way_in(client, database):
    sign_in_with_x(client, "only_x")
    response = client.post("/account/x/unlink")
    assert response.status_code == 409 and 'data-code="last_sign_in_method"' in response.get_data(
        as_text=True
    )
    with database.session() as s:
        assert s.scalar(select(User.x_username)) == "only_x"


def test_denied_consent(client, database):
    response = client.get(answer_of_x(start_at_x(client), decision="deny"))
    assert_refused(response, "x_denied")
    assert count_users(database) == 0 and client.get("/api/auth/me").status_code == 401


def test_state_mismatch(client, make_client, database):
    callback = answer_of_x(start_at_x(client), username="mismatch_x")
    assert_refused(make_client().get(callback), "x_state_mismatch")  # another browser
    tampered = callback.replace("state=", "state=x")
    assert_refused(client.get(tampered), "x_state_mismatch")
    assert count_users(database) == 0


def test_reused_code(client, make_client, database):
    authorize = start_at_x(client)
    replay = make_client()
    replay.client.set_cookie("clawdet_session", client.client.get_cookie("clawdet_session").value)
    callback = answer_of_x(authorize, username="reuse_x")
    assert client.get(callback).status_code == 302
    assert count_users(database) == 1
    assert_refused(replay.get(callback), "x_code_invalid")
    assert replay.get("/api/auth/me").status_code == 401
    assert count_users(database) == 1


def test_expired_code(client, database):
    callback = answer_of_x(start_at_x(client), username="slow_x")
    time.sleep(CODE_TTL + 0.3)
    assert_refused(client.get(callback), "x_code_invalid")
    assert count_users(database) == 0 and client.get("/api/auth/me").status_code == 401


def test_no_secret_in_logs(client, x_sandbox, caplog):
    caplog.set_level("DEBUG")
    sign_in_with_x(client, "logged_x")
    client.get(answer_of_x(start_at_x(client), decision="deny"))
    assert x_sandbox.x_client_secret not in caplog.text
    assert "access_token" not in caplog.text
