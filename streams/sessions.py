"""The signed-in user of a request to the stream server: the web app's own session cookie,
checked with Flask's own serializer and the same server-side session rule."""

from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature

from clawdet.accounts import sessions
from clawdet.settings import Settings
from db.engine import Database
from db.models import User


class SessionReader:
    def __init__(self, settings: Settings, database: Database):
        signer = Flask("clawdet.streams")
        signer.secret_key = settings.secret_key
        self.serializer = SecureCookieSessionInterface().get_signing_serializer(signer)
        self.cookie_name = settings.session_cookie_name
        self.database = database

    def user(self, cookies: dict[str, str]) -> User | None:
        """Blocking (it reads the database): call it on a worker thread."""
        cookie = cookies.get(self.cookie_name)
        if not cookie:
            return None
        try:
            data = self.serializer.loads(cookie, max_age=int(sessions.LIFETIME.total_seconds()))
        except BadSignature:
            return None
        login = data.get("_user_id") if isinstance(data, dict) else None
        if not isinstance(login, str):
            return None
        with self.database.sessions() as db:
            found = sessions.signed_in(db, login)
            return found[0] if found else None
