"""Per-instance credentials, derived rather than stored.

Each credential is HKDF-SHA256 of a root, the instance id, a purpose and a version; rotation
bumps the version. Two roots, so each tier holds only what it needs:
- CREDENTIALS_ROOT, kept by the workers: the LLM proxy keys and the backup encryption keys. The
  database keeps only an LLM key's SHA-256 (the proxy looks keys up by it), which the worker
  records when it writes the key into the stack config.
- GATEWAY_TOKEN_ROOT, kept by the workers and the web app, which shows each owner their token.
SECRET_KEY only signs sessions and links: rotating it ends sessions and nothing else. Credentials
issued before the roots existed (the `*_legacy` columns) were HMACs of SECRET_KEY; they keep
working until rotated, and a rotation moves them to the roots.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LLM_KEY_PREFIX = "clk_"


@dataclass(frozen=True)
class Roots:
    """What this process may derive: the web app is given no `credentials` root."""

    gateway_tokens: str = field(repr=False)
    credentials: str = field(default="", repr=False)
    legacy: str = field(default="", repr=False)  # SECRET_KEY, for credentials issued before roots

    @classmethod
    def of(cls, settings, *, worker: bool = True) -> Roots:
        return cls(
            gateway_tokens=settings.gateway_token_root,
            credentials=settings.credentials_root if worker else "",
            legacy=settings.secret_key,
        )


def _derive(root: str, purpose: str, instance_id: str, version: int, length: int = 32) -> bytes:
    if not root:
        raise PermissionError(f"this process holds no root for {purpose}s (they are the workers')")
    info = f"clawdet/{purpose}/{instance_id}/{version}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(root.encode())


def _legacy(secret: str, purpose: str, instance_id: str, version: int) -> bytes:
    message = f"clawdet/{purpose}/{instance_id}/{version}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def llm_key(roots: Roots, instance) -> str:
    if not roots.credentials:  # a legacy key too: the web tier derives no LLM key at all
        raise PermissionError("this process holds no root for llm-keys (they are the workers')")
    version = instance.llm_key_version
    if instance.llm_key_legacy:
        raw = _legacy(roots.legacy, "llm-key", instance.id, version)
    else:
        raw = _derive(roots.credentials, "llm-key", instance.id, version)
    return LLM_KEY_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def gateway_token(roots: Roots, instance) -> str:
    version = instance.gateway_token_version
    if instance.gateway_token_legacy:
        return _legacy(roots.legacy, "gateway-token", instance.id, version).hex()
    return _derive(roots.gateway_tokens, "gateway-token", instance.id, version).hex()


def backup_key(root: str, instance_id: str, version: int) -> bytes:
    """The AES-256 key of an instance's backups (CREDENTIALS_ROOT; `version` moves on rotation)."""
    return _derive(root, "backup-key", instance_id, version)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def next_llm_key(instance) -> None:
    """Rotation, wherever it is asked for: the worker derives the new key when it next writes the
    stack config, and the old key keeps working until the server runs the new one."""
    instance.llm_key_version += 1
    instance.llm_key_legacy = False


def next_gateway_token(instance) -> None:
    instance.gateway_token_version += 1
    instance.gateway_token_legacy = False


def issue_llm_key(instance, roots: Roots) -> str:
    """The key of the instance's current version, its hash recorded for the proxy (the worker,
    before the key goes into the stack config). The key it replaces keeps working until the
    server runs the new one (lifecycle.ready)."""
    key = llm_key(roots, instance)
    hashed = key_hash(key)
    if instance.llm_key_hash != hashed:
        if instance.llm_key_hash and instance.ready_at is not None:
            instance.llm_key_previous_hash = instance.llm_key_previous_hash or instance.llm_key_hash
        instance.llm_key_hash = hashed
    return key


def deployed_llm_key(instance, key: str) -> None:
    """The server runs `key` now (its `up` succeeded): the proxy accepts it and the current key,
    nothing older, even when the owner rotated again while it was pushed."""
    pushed = key_hash(key)
    instance.llm_key_previous_hash = None if pushed == instance.llm_key_hash else pushed


def accepts_llm_key(hashed: str):
    """The SQL condition of an instance that takes a key with this hash: its current key, or the
    one before while the new one is being rolled out to its server."""
    from sqlalchemy import or_

    from db.models import Instance

    return or_(Instance.llm_key_hash == hashed, Instance.llm_key_previous_hash == hashed)
