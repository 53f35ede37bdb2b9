"""The platform's SSH key: root on every customer server accepts its public half, and the
program's remote commands sign in with the private half (kept like the Pulumi passphrase)."""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

COMMENT = "clawdet-platform"


def generate() -> str:
    """A new ed25519 private key in OpenSSH format."""
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()


def public_key(private_key: str) -> str:
    """The authorized_keys line of a private key (ValueError, value not shown, when it is not one)."""
    try:
        key = serialization.load_ssh_private_key(private_key.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("the platform's SSH key is not a private key in OpenSSH format") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("the platform's SSH key must be an ed25519 key (ssh-keygen -t ed25519)")
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {COMMENT}"
