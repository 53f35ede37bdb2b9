"""Signed-in browsers: the login id a session cookie carries ("user:version:web session") and
the user it stands for, for the web app and the stream server alike."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from db.models import User, WebSession

LIFETIME = timedelta(days=14)  # of the signed session cookie


def login_id(user: User, web_session: str) -> str:
    return f"{user.id}:{user.session_version}:{web_session}"


def signed_in(db: Session, login: str) -> tuple[User, str] | None:
    """The user and web session of `login`, unless the user is gone or disabled, signed out
    everywhere since (a newer session version) or signed out of this session (no row)."""
    user_id, _, rest = login.partition(":")
    version, _, web_session = rest.partition(":")
    user = db.get(User, user_id)
    if user is None or user.disabled or str(user.session_version) != version:
        return None
    row = db.get(WebSession, web_session) if web_session else None
    if row is None or row.user_id != user.id:
        return None  # signed out: this is a copy of an ended session's cookie
    return user, web_session
