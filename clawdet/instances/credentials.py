"""Per-instance credentials, derived rather than stored.

An instance's LLM proxy key and gateway token are HMACs of the platform secret, the instance id,
a purpose and a version. The database keeps only the key's SHA-256 (for the proxy to look keys
up); the worker derives the plaintext when it writes the stack config (as Pulumi secrets), and
the dashboard derives the gateway token to show its owner. Rotation bumps the version.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

LLM_KEY_PREFIX = "clk_"


def _derive(secret: str, purpose: str, instance_id: str, version: int) -> bytes:
    message = f"clawdet/{purpose}/{instance_id}/{version}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def llm_key(secret: str, instance_id: str, version: int) -> str:
    raw = _derive(secret, "llm-key", instance_id, version)
    return LLM_KEY_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def gateway_token(secret: str, instance_id: str, version: int) -> str:
    return _derive(secret, "gateway-token", instance_id, version).hex()


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def assign_llm_key(instance, secret: str) -> str:
    """Give the instance the key of its current version; returns the plaintext (show it once).
    The key it replaces keeps working until the server runs the new one (lifecycle.ready)."""
    key = llm_key(secret, instance.id, instance.llm_key_version)
    if instance.llm_key_hash and instance.ready_at is not None:
        instance.llm_key_previous_hash = instance.llm_key_previous_hash or instance.llm_key_hash
    instance.llm_key_hash = key_hash(key)
    return key


def accepts_llm_key(hashed: str):
    """The SQL condition of an instance that takes a key with this hash: its current key, or the
    one before while the new one is being rolled out to its server."""
    from sqlalchemy import or_

    from db.models import Instance

    return or_(Instance.llm_key_hash == hashed, Instance.llm_key_previous_hash == hashed)
