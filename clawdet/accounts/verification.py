"""Email verification: an address is only someone's once they open a link sent to it.

Until then it receives no email but the link itself (clawdet/mail/outbox.py refuses the rest).
An address typed into an X sign-up holds its claim for the account's first day at most: after
that, someone registering with the address takes it over (the X account keeps its sign-in by X
and is asked for an address again). So an X sign-up cannot squat someone else's email.

The link is a signed, time-limited token of the account and the address, so it stops working
when the address changes; the mail loop makes it (clawdet/mail/triggers.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from clawdet.errors import UserFacingError
from db import audit
from db.models import User, utcnow

WINDOW = timedelta(hours=24)
_SALT = "clawdet-verify-email"


def _signer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=_SALT)


def link(secret: str, public_url: str, user: User) -> str:
    token = _signer(secret).dumps({"u": user.id, "e": user.email})
    return f"{public_url}/verify-email/{token}"


def confirm(session: Session, secret: str, token: str, *, ip: str | None = None) -> User:
    """The account whose address this link confirms, now verified."""
    user = account_of(session, secret, token)
    if not user.email_verified:
        user.email_verified = True
        audit.record(session, "user.verify_email", actor=user, target_type="user", target_id=user.id, ip=ip)
    return user


def account_of(session: Session, secret: str, token: str) -> User:
    """The account a link is for, if it is still good (refused in words otherwise)."""
    try:
        data = _signer(secret).loads(token, max_age=int(WINDOW.total_seconds()))
    except SignatureExpired:
        raise UserFacingError(
            "verification_link_expired",
            "This confirmation link has expired (links work for 24 hours).",
            "Sign in and ask for a new link on your dashboard.",
            status=410,
        ) from None
    except BadSignature:
        data = None
    user = session.get(User, data.get("u")) if isinstance(data, dict) else None
    if user is None or user.email is None or user.email != data.get("e"):
        raise UserFacingError(
            "verification_link_invalid",
            "This confirmation link is not valid (or the account's email address changed since).",
            "Sign in and ask for a new link on your dashboard.",
            status=400,
        )
    return user


def set_email(user: User, address: str, now: datetime | None = None) -> None:
    """Give `user` this address, unverified (a no-op when it is already theirs)."""
    if user.email != address:
        user.email, user.email_verified, user.email_set_at = address, False, now or utcnow()


def claim_lapsed(holder: User, now: datetime | None = None) -> bool:
    """Whether `holder`'s unverified address is free for someone else to take: an address typed
    into an X sign-up, once the account is a day old (counted from the account, so typing the
    address again does not renew the claim). An account that signs in with its address (a
    password) never loses it this way: its owner would be locked out."""
    if holder.email_verified or holder.password_hash:
        return False
    return holder.created_at is None or holder.created_at < (now or utcnow()) - WINDOW


def release(session: Session, holder: User, *, ip: str | None = None) -> None:
    """Take a lapsed, unverified address off `holder` (before someone else registers it)."""
    audit.record(session, "user.email_released", target_type="user", target_id=holder.id, ip=ip)
    holder.email, holder.email_verified, holder.email_set_at = None, False, None
    session.flush()
