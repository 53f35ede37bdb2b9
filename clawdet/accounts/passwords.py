"""argon2id for every new hash; bcrypt hashes (imported from users.json) verify and are upgraded."""

from __future__ import annotations

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_argon2 = PasswordHasher()  # argon2id with the library's current recommended parameters


def hash_password(password: str) -> str:
    return _argon2.hash(password)


def verify_password(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    """(matches, needs_rehash)."""
    if not stored_hash:
        return False, False
    if stored_hash.startswith(("$2a$", "$2b$", "$2y$")):
        try:
            matches = bcrypt.checkpw(password.encode()[:72], stored_hash.encode())
        except ValueError:
            return False, False
        return matches, matches
    try:
        _argon2.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False, False
    return True, _argon2.check_needs_rehash(stored_hash)


# Verifying against this keeps the time of a login for an unknown email like a known one's.
DUMMY_HASH = hash_password("not-a-real-password-just-for-timing")
