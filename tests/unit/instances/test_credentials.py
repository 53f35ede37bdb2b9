"""Instance credentials come from their own roots (hardening, issue 16 item 9): SECRET_KEY only
signs sessions, the web app's roots cannot make an LLM key, and a rotation moves a credential
issued before the roots onto them."""

from __future__ import annotations

import hashlib
import hmac
from types import SimpleNamespace

import pytest

from clawdet.instances import credentials

ROOTS = credentials.Roots(gateway_tokens="g" * 43, credentials="c" * 43, legacy="session-key-1")


def instance(**fields):
    defaults = {
        "id": "i-1", "llm_key_version": 1, "gateway_token_version": 1, "llm_key_legacy": False,
        "gateway_token_legacy": False, "llm_key_hash": None, "llm_key_previous_hash": None, "ready_at": None,
    }  # fmt: skip
    return SimpleNamespace(**(defaults | fields))


def test_rotating_the_session_key_changes_no_credential():
    row = instance()
    rotated = credentials.Roots(ROOTS.gateway_tokens, ROOTS.credentials, legacy="session-key-2")
    assert credentials.llm_key(ROOTS, row) == credentials.llm_key(rotated, row)
    assert credentials.gateway_token(ROOTS, row) == credentials.gateway_token(rotated, row)


def test_each_credential_is_its_own_roots_and_differs_by_instance_purpose_and_version():
    row = instance()
    key, token = credentials.llm_key(ROOTS, row), credentials.gateway_token(ROOTS, row)
    other_root = credentials.Roots(gateway_tokens="x" * 43, credentials=ROOTS.credentials)
    assert credentials.llm_key(other_root, row) == key and credentials.gateway_token(other_root, row) != token
    assert key.startswith("clk_") and len(token) == 64
    assert credentials.llm_key(ROOTS, instance(id="i-2")) != key
    assert credentials.gateway_token(ROOTS, instance(gateway_token_version=2)) != token
    backup = credentials.backup_key(ROOTS.credentials, "i-1", 1)
    assert len(backup) == 32 and backup != credentials.backup_key(ROOTS.credentials, "i-1", 2)


def test_the_web_apps_roots_show_tokens_but_make_no_llm_key():
    web = credentials.Roots.of(
        SimpleNamespace(gateway_token_root="g" * 43, credentials_root="c" * 43, secret_key="s"), worker=False
    )
    assert credentials.gateway_token(web, instance()) == credentials.gateway_token(ROOTS, instance())
    for row in (instance(), instance(llm_key_legacy=True)):  # a key from before the roots too
        with pytest.raises(PermissionError, match="workers"):
            credentials.llm_key(web, row)


def test_a_legacy_credential_keeps_its_secret_key_derivation_until_rotated():
    row = instance(llm_key_legacy=True, gateway_token_legacy=True, ready_at="then")
    message = b"clawdet/gateway-token/i-1/1"
    old_token = hmac.new(b"session-key-1", message, hashlib.sha256).hexdigest()
    assert credentials.gateway_token(ROOTS, row) == old_token  # what the server runs today
    old_key = credentials.issue_llm_key(row, ROOTS)
    credentials.next_llm_key(row)
    credentials.next_gateway_token(row)
    assert not row.llm_key_legacy and not row.gateway_token_legacy
    new_key = credentials.issue_llm_key(row, ROOTS)
    assert new_key == credentials.llm_key(ROOTS, instance(llm_key_version=2))  # from the root now
    assert row.llm_key_hash == credentials.key_hash(new_key)
    assert row.llm_key_previous_hash == credentials.key_hash(old_key)  # works until the server has it
    assert credentials.issue_llm_key(row, ROOTS) == new_key and row.llm_key_hash == credentials.key_hash(
        new_key
    )


def test_the_proxy_keeps_accepting_the_key_the_server_runs_whatever_the_owner_rotates_meanwhile():
    """The owner rotates again while a new key is being pushed (or the push succeeds but the
    gateway is slow to answer): the key the server runs is always one the proxy accepts."""
    row = instance(ready_at="then")
    accepted = lambda: {row.llm_key_hash, row.llm_key_previous_hash} - {None}
    v1 = credentials.issue_llm_key(row, ROOTS)
    credentials.deployed_llm_key(row, v1)
    credentials.next_llm_key(row)
    v2 = credentials.issue_llm_key(row, ROOTS)  # the worker pushes v2 ...
    assert accepted() == {credentials.key_hash(v1), credentials.key_hash(v2)}
    credentials.next_llm_key(row)  # ... the owner rotates meanwhile ...
    credentials.deployed_llm_key(row, v2)  # ... and the push succeeds: the server runs v2
    assert accepted() == {credentials.key_hash(v2)}
    v3 = credentials.issue_llm_key(row, ROOTS)  # the next operation
    assert accepted() == {credentials.key_hash(v2), credentials.key_hash(v3)}
