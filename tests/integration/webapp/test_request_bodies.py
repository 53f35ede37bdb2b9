"""Hardening: a JSON field of the wrong type is a 400 that names the field, never a 500."""

import pytest

from tests.fixtures.database import register


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/instances", {"subdomain": 5}, "subdomain"),
        ("/api/instances", {"tier": ["pro"]}, "tier"),
        ("/api/instances", {"region": {"name": "hel1"}}, "region"),
        ("/api/auth/details", {"email": 7, "acceptTerms": True}, "email"),
        ("/api/auth/details", {"email": "alice@example.com", "acceptTerms": "yes"}, "acceptTerms"),
    ],
)
def test_wrong_types_are_refused_with_the_field_named(client, path, body, field):
    register(client)
    response = client.post(path, json=body)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_field" and error["field"] == field and error["action"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"email": ["a"], "password": "x"}, "email"), ({"email": "a@example.com", "password": 12}, "password")],
)
def test_sign_in_with_wrong_types_is_a_400(client, body, field):
    response = client.post("/api/auth/login", json=body)
    assert response.status_code == 400 and response.get_json()["error"]["field"] == field
