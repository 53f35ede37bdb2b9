"""The homepage trial chat: answered by the trial model through the platform's upstream, five
messages per visitor counted on the server by session and by IP (the stricter wins)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from db.models import TrialUsage
from tests.fixtures.llm import llm_settings

TRIAL = "/api/trial/chat"


@pytest.fixture
def settings(tmp_path, database_url, llm_sandbox):
    return llm_settings(tmp_path, database_url, llm_sandbox, TRIAL_MODEL="sandbox-large")


def say(client, text: str, ip: str = "203.0.113.7", **extra):
    return client.post(
        TRIAL,
        json={"messages": [{"role": "user", "content": text}], **extra},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_home_page_has_the_chat_without_inline_script(client):
    page = client.get("/").get_data(as_text=True)
    assert 'id="trial-chat"' in page and "/static/trial.js" in page
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert client.get("/static/trial.js").status_code == 200


def test_five_messages_then_an_invitation_to_sign_up(client, llm_sandbox, database):
    before = len(llm_sandbox.llm.completions())
    for remaining in (4, 3, 2, 1, 0):
        response = say(client, "what is clawdet", count=0, remaining=5)  # the client's count is ignored
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["reply"].startswith("Sandbox reply") and body["remaining"] == remaining
    refused = say(client, "one more please")
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert (
        error["code"] == "trial_limit" and error["link"] == "/signup" and error["message"] and error["action"]
    )
    calls = llm_sandbox.llm.completions()[before:]
    assert len(calls) == 5 and {call.model for call in calls} == {"sandbox-large"}
    with database.session() as s:
        assert s.scalar(select(TrialUsage.messages)) == 5


def test_a_fresh_session_does_not_reset_the_ip_count(client, make_client):
    for _ in range(5):
        assert say(client, "hi").status_code == 200
    fresh = make_client()  # new cookies, same address
    assert say(fresh, "hi again").status_code == 429
    assert say(make_client(), "hi from elsewhere", ip="198.51.100.9").status_code == 200


def test_a_new_address_does_not_reset_the_session_count(client):
    for index in range(5):
        assert say(client, "hi", ip=f"192.0.2.{index + 1}").status_code == 200
    assert say(client, "hi", ip="192.0.2.99").status_code == 429


def test_bad_requests_are_not_counted(client, database):
    for body in ({}, {"messages": []}, {"messages": [{"role": "assistant", "content": "x"}]}):
        response = client.post(TRIAL, json=body)
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_request"
    with database.session() as s:
        assert s.scalar(select(TrialUsage.messages)) is None


def test_csrf_is_required(app):
    response = app.test_client().post(TRIAL, json={"messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "csrf_failed"


def test_an_ipv6_subscriber_is_one_visitor_across_its_64(make_client):
    """Hardening (issue 16, item 17): new addresses inside one /64 share the count."""
    for index in range(5):
        assert say(make_client(), "hi", ip=f"2001:db8:1:2::{index + 1:x}").status_code == 200
    assert say(make_client(), "hi", ip="2001:db8:1:2:ffff::9").status_code == 429
    assert say(make_client(), "hi", ip="2001:db8:1:3::1").status_code == 200  # another subscriber
