"""Sign-in back-off, per account and client, that neither tells accounts apart nor locks an
owner's own browser out.

Failures count under two keys: the account with this client (a browser that signed in to the
account before, by its device cookie; else the client's IP address) and, for clients that are
not such a known device, the account as a whole (a slow guess from many addresses). After a few
free failures a key backs off, doubling, and it forgets after an hour without a failure. An
unknown email counts and answers exactly like a real one, and an attacker elsewhere never blocks
the owner's own browser: its key is its own, and the account-wide key does not apply to it.
Each attempt is counted before its password is checked and given back when it succeeds, so
guesses sent in parallel cannot all pass one check. Keys are hashes: the table holds no email or
address; the workers delete keys an hour after their last failure (`prune`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from clawdet.errors import UserFacingError
from db.models import LoginThrottle

BACKOFF_START = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=1)  # a key without a failure for this long starts again
FREE_PER_CLIENT = 5  # failed sign-ins of one client for one account before it backs off
FREE_PER_ACCOUNT = 50  # of all unknown clients together


@dataclass(frozen=True)
class Client:
    """Who is signing in: `id` is "device:<id>" or "ip:<address or IPv6 /64>"; `known_accounts`
    are the accounts this device signed in to before (their `device_mark`s, from its signed
    cookie)."""

    id: str
    known_accounts: frozenset[str] = frozenset()


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def device_mark(user) -> str:
    """How a device cookie remembers an account: until its sessions are revoked."""
    return f"{user.id}.{user.session_version}"


def keys(email: str, client: Client, user=None) -> list[tuple[str, int]]:
    """The keys that apply, each with its free failures."""
    applying = [(_key(email, client.id), FREE_PER_CLIENT)]
    if user is None or device_mark(user) not in client.known_accounts:
        applying.append((_key(email, "*"), FREE_PER_ACCOUNT))
    return applying


def _held_up(until: datetime, now: datetime) -> UserFacingError:
    wait = int((until - now).total_seconds()) + 1
    return UserFacingError(
        "too_many_attempts",
        "Too many failed sign-ins for this email from here.",
        f"Wait {wait} seconds, then try again (a browser you signed in with before is not held up).",
        status=429,
        headers={"Retry-After": str(wait)},
    )


def check(session: Session, applying: list[tuple[str, int]], now: datetime) -> None:
    """Refuse at once, writing nothing, while a key is held up."""
    for key, _free in applying:
        row = session.get(LoginThrottle, key)
        if row is not None and row.blocked_until is not None and row.blocked_until > now:
            raise _held_up(row.blocked_until, now)


def reserve(session: Session, applying: list[tuple[str, int]], now: datetime) -> None:
    """Count this attempt as a failure under each key before its password is checked, and
    commit: an upsert, so attempts at once queue on the row and each sees the ones before it.
    One that finds a key held up by an attempt before it is refused and not counted."""
    insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(
        LoginThrottle
    )
    for key, free in applying:
        stale = LoginThrottle.updated_at < now - FORGET_AFTER
        session.execute(
            insert.values(key=key, failures=1, updated_at=now).on_conflict_do_update(
                index_elements=["key"],
                set_={"failures": case((stale, 1), else_=LoginThrottle.failures + 1), "updated_at": now},
            )
        )
        row = session.get(LoginThrottle, key, populate_existing=True)
        if row.blocked_until is not None and row.blocked_until > now:
            until = row.blocked_until
            session.rollback()
            raise _held_up(until, now)
        extra = row.failures - free
        if extra >= 0:  # capped before it is computed: 2**44 seconds would not fit a timedelta
            row.blocked_until = now + min(BACKOFF_START * 2 ** min(extra, 10), BACKOFF_MAX)
    session.commit()


def succeeded(session: Session, email: str, client: Client, applying: list[tuple[str, int]]) -> None:
    """The client's own count starts again; the account-wide one gets this attempt back and
    keeps counting an attack."""
    own = _key(email, client.id)
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == own))
    for key, free in applying:
        if key != own:
            back = LoginThrottle.failures - 1
            session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.key == key, LoginThrottle.failures > 0)
                .values(  # and the hold this attempt alone set, counting to the free limit
                    failures=back, blocked_until=case((back < free, None), else_=LoginThrottle.blocked_until)
                )
            )


def prune(session: Session, now: datetime) -> int:
    """Forget keys an hour after their last failure (they would start again anyway)."""
    done = session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.updated_at < now - FORGET_AFTER,
            (LoginThrottle.blocked_until.is_(None)) | (LoginThrottle.blocked_until < now),
        )
    )
    return done.rowcount
