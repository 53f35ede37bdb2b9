"""The X OAuth 2.0 stand-in, driven by Authlib's OAuth 2 client (PKCE S256, HTTP Basic)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import urllib.parse

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from tests.fixtures.sandbox import start_sandbox

REDIRECT = "http://127.0.0.1:8000/auth/x/callback"
SCOPE = "tweet.read users.read offline.access"


def oauth_client(box) -> OAuth2Client:
    return OAuth2Client(
        box.x_client_id,
        box.x_client_secret,
        scope=SCOPE,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )


def authorize_url(box, client: OAuth2Client, verifier: str) -> tuple[str, str]:
    return client.create_authorization_url(box.x_url + "/i/oauth2/authorize", code_verifier=verifier)


def submit_page(url: str, **choices: str) -> httpx.Response:
    """What a person does: open the page, then press a button of its form."""
    page = httpx.get(url)
    assert page.status_code == 200
    assert 'id="approve"' in page.text and 'id="deny"' in page.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
    fields.update(choices)
    action = urllib.parse.urljoin(url, re.search(r'<form method="post" action="([^"]+)"', page.text).group(1))
    return httpx.post(action, data=fields)


def code_from(response: httpx.Response) -> str:
    assert response.status_code == 302
    return response.headers["Location"]


def test_full_pkce_flow_through_the_approve_page(sandbox):
    client = oauth_client(sandbox)
    verifier = generate_token(48)
    url, state = authorize_url(sandbox, client, verifier)
    callback = code_from(submit_page(url, decision="approve", username="sandbox_alice"))
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query)
    assert callback.startswith(REDIRECT) and query["state"] == [state]

    token = client.fetch_token(
        sandbox.x_url + "/2/oauth2/token", authorization_response=callback, code_verifier=verifier
    )
    assert token["token_type"] == "bearer" and token["expires_in"] == 7200
    assert token["refresh_token"] and set(token["scope"].split()) == set(SCOPE.split())

    me = client.get(sandbox.x_url + "/2/users/me", params={"user.fields": "profile_image_url"}).json()["data"]
    assert me["username"] == "sandbox_alice" and me["name"] == "Alice Sandbox" and me["id"].isdigit()
    avatar = httpx.get(me["profile_image_url"])
    assert avatar.status_code == 200 and avatar.content.startswith(b"\x89PNG")
    plain = client.get(sandbox.x_url + "/2/users/me").json()["data"]
    assert set(plain) == {"id", "name", "username"}  # like X: extra fields only when asked for

    refreshed = client.refresh_token(sandbox.x_url + "/2/oauth2/token", refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]


def test_a_typed_username_becomes_a_new_user_and_python_can_add_users(sandbox):
    sandbox.x.add_user("carol_x", "Carol From Python")
    client = oauth_client(sandbox)
    verifier = generate_token(48)
    url, _ = authorize_url(sandbox, client, verifier)
    assert "@carol_x" in httpx.get(url).text
    callback = code_from(
        submit_page(url, decision="approve", username="sandbox_alice", new_username="dave_new")
    )
    client.fetch_token(
        sandbox.x_url + "/2/oauth2/token", authorization_response=callback, code_verifier=verifier
    )
    assert client.get(sandbox.x_url + "/2/users/me").json()["data"]["username"] == "dave_new"
    assert {u["username"] for u in sandbox.x.users()} >= {"carol_x", "dave_new"}


def test_auto_approve_shortcuts(sandbox):
    sandbox.x.auto_approve("eve_auto")
    client = oauth_client(sandbox)
    verifier = generate_token(48)
    url, _ = authorize_url(sandbox, client, verifier)
    callback = code_from(httpx.get(url))
    client.fetch_token(
        sandbox.x_url + "/2/oauth2/token", authorization_response=callback, code_verifier=verifier
    )
    assert client.get(sandbox.x_url + "/2/users/me").json()["data"]["username"] == "eve_auto"
    sandbox.x.auto_approve(None)
    assert httpx.get(url).status_code == 200  # the page again
    assert "code=" in code_from(httpx.get(url + "&sandbox_auto=approve&sandbox_user=sandbox_bob"))


def test_deny_redirects_with_access_denied(sandbox):
    url, state = authorize_url(sandbox, oauth_client(sandbox), generate_token(48))
    location = code_from(submit_page(url, decision="deny"))
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(location).query) == {
        "error": ["access_denied"],
        "state": [state],
    }


def test_bad_authorize_requests_show_an_error_page_and_do_not_redirect(sandbox):
    client = oauth_client(sandbox)
    url, _ = authorize_url(sandbox, client, generate_token(48))
    for broken in [
        url.replace(sandbox.x_client_id, "someone-else"),
        re.sub(r"&state=[^&]+", "", url),
        re.sub(r"&code_challenge=[^&]+", "", url),
        url.replace("response_type=code", "response_type=token"),
    ]:
        response = httpx.get(broken)
        assert response.status_code == 400 and "Something went wrong" in response.text
    sandbox.x.allow_redirect_uris(["https://clawdet.example/auth/x/callback"])
    assert httpx.get(url).status_code == 400


def _code(box, verifier: str, redirect: str = REDIRECT) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": box.x_client_id,
            "redirect_uri": redirect,
            "scope": SCOPE,
            "state": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "sandbox_auto": "approve",
            "sandbox_user": "sandbox_bob",
        }
    )
    location = httpx.get(f"{box.x_url}/i/oauth2/authorize?{query}").headers["Location"]
    return urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]


def _exchange(box, code: str, verifier: str, redirect: str = REDIRECT, auth=None) -> httpx.Response:
    return httpx.post(
        box.x_url + "/2/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "code_verifier": verifier,
            "client_id": box.x_client_id,
        },
        auth=auth if auth is not None else (box.x_client_id, box.x_client_secret),
    )


def test_token_endpoint_refusals_use_x_shapes(sandbox):
    verifier = generate_token(48)

    wrong_verifier = _exchange(sandbox, _code(sandbox, verifier), generate_token(48))
    assert wrong_verifier.status_code == 400
    assert wrong_verifier.json() == {
        "error": "invalid_request",
        "error_description": "Value passed for the code verifier did not match the code challenge.",
    }

    wrong_redirect = _exchange(sandbox, _code(sandbox, verifier), verifier, redirect="http://127.0.0.1:9/cb")
    assert wrong_redirect.status_code == 400 and "redirect uri" in wrong_redirect.json()["error_description"]

    bad_client = _exchange(sandbox, _code(sandbox, verifier), verifier, auth=(sandbox.x_client_id, "nope"))
    assert bad_client.status_code == 401 and bad_client.json()["error"] == "unauthorized_client"
    no_basic = httpx.post(sandbox.x_url + "/2/oauth2/token", data={"grant_type": "authorization_code"})
    assert no_basic.status_code == 401

    code = _code(sandbox, verifier)
    first = _exchange(sandbox, code, verifier)
    assert first.status_code == 200
    access = first.json()["access_token"]
    me = httpx.get(sandbox.x_url + "/2/users/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 200
    replay = _exchange(sandbox, code, verifier)
    assert replay.status_code == 400
    assert replay.json()["error_description"] == "Value passed for the authorization code was invalid."
    revoked = httpx.get(sandbox.x_url + "/2/users/me", headers={"Authorization": f"Bearer {access}"})
    assert revoked.status_code == 401  # a replayed code revokes what it had issued
    assert revoked.json()["title"] == "Unauthorized"


def test_expired_code_is_refused(tmp_path):
    box = start_sandbox(tmp_path / "state.json", x_code_ttl=0.2)
    try:
        verifier = generate_token(48)
        code = _code(box, verifier)
        time.sleep(0.3)
        expired = _exchange(box, code, verifier)
        assert expired.status_code == 400 and expired.json()["error"] == "invalid_request"
    finally:
        box.stop()


def test_users_me_requires_a_token(sandbox):
    assert httpx.get(sandbox.x_url + "/2/users/me").status_code == 401
    assert httpx.get(sandbox.x_url + "/2/users/me", headers={"Authorization": "Bearer junk"}).json() == {
        "title": "Unauthorized",
        "type": "about:blank",
        "status": 401,
        "detail": "Unauthorized",
    }


@pytest.mark.parametrize("username", ["", "has space", "x" * 16])
def test_invalid_usernames_are_rejected(sandbox, username):
    with pytest.raises(ValueError):
        sandbox.x.add_user(username)
