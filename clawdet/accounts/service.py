"""Accounts: registration, sign-in (with the back-off of clawdet/accounts/throttle.py), and the
details step."""

from __future__ import annotations

from email_validator import EmailNotValidError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clawdet.accounts import throttle, verification
from clawdet.accounts.importer import normalise_email
from clawdet.accounts.passwords import DUMMY_HASH, hash_password, verify_password
from clawdet.errors import UserFacingError
from db import audit
from db.models import User, utcnow

PASSWORD_MIN = 8
PASSWORD_MAX = 128
NAME_MAX = 100


def clean_email(raw: str | None) -> str:
    try:
        return normalise_email(raw or "")
    except EmailNotValidError as exc:
        raise UserFacingError(
            "invalid_email",
            f"That email address is not valid: {exc}",
            "Check the address and try again.",
            field="email",
        ) from exc


def clean_password(raw: str | None) -> str:
    password = raw or ""
    if len(password) < PASSWORD_MIN:
        raise UserFacingError(
            "weak_password",
            f"Passwords need at least {PASSWORD_MIN} characters.",
            "Choose a longer password.",
            field="password",
        )
    if len(password) > PASSWORD_MAX:
        raise UserFacingError(
            "password_too_long",
            f"Passwords can have at most {PASSWORD_MAX} characters.",
            "Choose a shorter password.",
            field="password",
        )
    return password


def clean_name(raw: str | None) -> str:
    name = " ".join((raw or "").split())
    if not name:
        raise UserFacingError(
            "name_required", "Please tell us your name.", "Fill in your name.", field="name"
        )
    if len(name) > NAME_MAX:
        raise UserFacingError(
            "name_too_long",
            f"Names can have at most {NAME_MAX} characters.",
            "Shorten the name.",
            field="name",
        )
    return name


def email_taken() -> UserFacingError:
    return UserFacingError(
        "email_taken",
        "An account with this email already exists.",
        "Sign in instead, or use another email.",
        status=409,
        field="email",
    )


def take_address(session: Session, address: str, *, ip: str | None = None) -> None:
    """Make `address` free for a new claim: refused while it is someone's verified address or
    a fresh unverified claim; a lapsed unverified claim is released (accounts/verification.py)."""
    holder = session.scalar(select(User).where(User.email == address))
    if holder is None:
        return
    if not verification.claim_lapsed(holder):
        raise email_taken()
    verification.release(session, holder, ip=ip)


def register(
    session: Session, *, name: str, email: str, password: str, free_beta: bool, ip: str | None = None
) -> User:
    user = User(name=clean_name(name), password_hash=hash_password(clean_password(password)))
    address = clean_email(email)
    take_address(session, address, ip=ip)
    verification.set_email(user, address)
    if free_beta:
        user.mark_free_beta()
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent registration won the unique index
        session.rollback()
        raise email_taken() from exc
    audit.record(session, "user.register", actor=user, target_type="user", target_id=user.id, ip=ip)
    return user


def authenticate(
    session: Session, *, email: str, password: str, client: throttle.Client, ip: str | None = None
) -> User:
    """The user whose email and password these are; unknown, wrong and held-up attempts answer
    alike for every email (see clawdet/accounts/throttle.py)."""
    refused = UserFacingError(
        "invalid_credentials",
        "Email or password is not right.",
        "Check both and try again, or create an account.",
        status=401,
    )
    try:
        address = normalise_email(email or "")
    except EmailNotValidError:
        raise refused from None
    user = session.scalar(select(User).where(User.email == address))
    now = utcnow()
    applying = throttle.keys(address, client, user)
    throttle.check(session, applying, now)
    throttle.reserve(session, applying, now)  # counted before the hash, given back on success
    stored = user.password_hash if user is not None else None
    matches, needs_rehash = verify_password(stored or DUMMY_HASH, password or "")  # alike in time
    if not (stored and matches):
        if user is not None:
            audit.record(session, "user.login_failed", target_type="user", target_id=user.id, ip=ip)
        session.commit()
        raise refused
    if user.disabled:
        raise UserFacingError(
            "account_disabled",
            "This account is disabled.",
            "Contact support if you think this is a mistake.",
            status=403,
        )
    if needs_rehash:
        user.password_hash = hash_password(password)
    throttle.succeeded(session, address, client, applying)
    audit.record(session, "user.login", actor=user, target_type="user", target_id=user.id, ip=ip)
    return user


def complete_details(
    session: Session, user: User, *, email: str, accept_terms: bool, ip: str | None = None
) -> User:
    address = clean_email(email)
    if not accept_terms:
        raise UserFacingError(
            "terms_required",
            "Please accept the terms to continue.",
            "Tick the box to accept the terms.",
            field="terms",
        )
    if user.email != address:
        take_address(session, address, ip=ip)
        verification.set_email(user, address)
        audit.record(session, "user.email_changed", actor=user, target_type="user", target_id=user.id, ip=ip)
    user.terms_accepted_at = user.terms_accepted_at or utcnow()
    audit.record(session, "user.details", actor=user, target_type="user", target_id=user.id, ip=ip)
    return user


def revoke_sessions(user: User) -> None:
    """Every session signed with the old version stops working at its next request."""
    user.session_version += 1
