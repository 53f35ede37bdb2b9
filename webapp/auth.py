"""Sign-up, sign-in, sign-out and the details step: pages and their JSON twins."""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf.csrf import generate_csrf
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete

from clawdet.accounts import service as accounts
from clawdet.accounts import sessions, throttle, verification
from clawdet.accounts.free_beta import grants_free_beta
from clawdet.errors import UserFacingError
from db import audit
from db.models import User, WebSession, utcnow
from webapp import dbs, settings
from webapp.bodies import json_body
from webapp.extensions import limiter, login_manager, network_of
from webapp.security import safe_next

bp = Blueprint("auth", __name__)

REGISTER_LIMIT = "5 per hour"
VERIFY_RESEND_LIMIT = "3 per hour"
LOGIN_LIMIT = "10 per minute"  # one budget for the page and the JSON sign-in
DETAILS_LIMIT = "10 per minute"  # the details step tells whether an email is taken
DEVICE_COOKIE = "clawdet_device"
DEVICE_ACCOUNTS = 5
DEVICE_MAX_AGE = timedelta(days=365)


class SessionUser(UserMixin):
    """What Flask-Login keeps: the user, the session version the cookie was signed with and the
    server-side session (a WebSession row) it belongs to."""

    def __init__(self, user: User, web_session: str):
        self.user = user
        self.web_session = web_session

    def get_id(self) -> str:
        return sessions.login_id(self.user, self.web_session)

    def __getattr__(self, name):
        return getattr(self.user, name)


@login_manager.user_loader
def _load(login: str) -> SessionUser | None:
    found = sessions.signed_in(dbs(), login)
    return SessionUser(*found) if found else None


@login_manager.unauthorized_handler
def _unauthorized():
    if request.path.startswith("/api/"):
        raise UserFacingError(
            "not_signed_in",
            "You need to sign in first.",
            "Sign in with POST /api/auth/login, then try again.",
            status=401,
        )
    return redirect(url_for("auth.login_page", next=request.full_path.rstrip("?")))


def current() -> User:
    return current_user.user


def client_ip() -> str | None:
    return request.remote_addr


def _sign_in(user: User) -> None:
    db = dbs()
    if current_user.is_authenticated:  # signing in again, or as someone else: the old session ends
        db.execute(delete(WebSession).where(WebSession.id == current_user.web_session))
    session.clear()  # a fresh session: nothing from before sign-in carries over
    expired = utcnow() - current_app.permanent_session_lifetime
    db.execute(delete(WebSession).where(WebSession.created_at < expired))  # the table stays bounded
    web_session = WebSession(user_id=user.id)
    db.add(web_session)
    db.commit()
    login_user(SessionUser(user, web_session.id))


def _sign_out() -> None:
    """End the session on the server too: a copy of its cookie no longer signs anyone in."""
    if current_user.is_authenticated:
        dbs().execute(delete(WebSession).where(WebSession.id == current_user.web_session))
        dbs().commit()
    logout_user()
    session.clear()


def _device_cookie() -> str:
    """__Host- on https: a customer's subdomain can neither read nor plant it."""
    return f"__Host-{DEVICE_COOKIE}" if settings().secure_cookies else DEVICE_COOKIE


def _devices() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt="clawdet-device")


def _device() -> dict | None:
    values = request.cookies.getlist(_device_cookie())
    if len(values) != 1:
        return None  # none, or one planted beside ours: trust neither
    try:
        data = _devices().loads(values[0])
    except BadSignature:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("d"), str) else None


def sign_in_client() -> throttle.Client:
    """This browser, for the sign-in back-off: its device cookie, else its address."""
    device = _device()
    if device is None:
        return throttle.Client(f"ip:{network_of(client_ip())}")
    return throttle.Client(f"device:{device['d']}", frozenset(map(str, device.get("a") or [])))


def _forget(mark: str, user: User) -> bool:
    return mark == user.id or mark.startswith(f"{user.id}.")


def remember_device(response: Response, user: User) -> Response:
    """A signed, long-lived cookie naming this browser and the accounts it signed in to: a
    stranger's failed sign-ins never hold it up (clawdet/accounts/throttle.py). Each account is
    marked with its session version, so "sign out everywhere" also makes every other browser a
    stranger again."""
    device = _device() or {"d": secrets.token_urlsafe(16), "a": []}
    others = [a for a in map(str, device.get("a") or []) if not _forget(a, user)]
    known = [*others[-(DEVICE_ACCOUNTS - 1) :], throttle.device_mark(user)]
    response.set_cookie(
        _device_cookie(),
        _devices().dumps({"d": device["d"], "a": known}),
        max_age=int(DEVICE_MAX_AGE.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=settings().secure_cookies,
    )
    return response


def next_page(user: User) -> str:
    if not user.details_complete:
        return url_for("auth.details_page")
    return safe_next(request.values.get("next"), url_for("dashboard.show"))


def me_json(user: User) -> dict:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "paid": user.paid,
        "paymentMethod": user.payment_method,
        "emailVerified": user.email_verified,
        "detailsComplete": user.details_complete,
        "xUsername": user.x_username,
    }


# Pages ----------------------------------------------------------------------------------------


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(REGISTER_LIMIT, methods=["POST"])
def signup_page():
    form, error = {}, None
    if request.method == "POST":
        form = request.form
        try:
            user = accounts.register(
                dbs(),
                name=form.get("name"),
                email=form.get("email"),
                password=form.get("password"),
                free_beta=grants_free_beta(dbs(), settings()),
                ip=client_ip(),
            )
            dbs().commit()
            _sign_in(user)
            return remember_device(redirect(next_page(user)), user)
        except UserFacingError as exc:
            dbs().rollback()
            error = exc
    return render_template("signup.html", form=form, error=error), (error.status if error else 200)


@bp.route("/login", methods=["GET", "POST"])
@limiter.shared_limit(LOGIN_LIMIT, scope="sign-in", methods=["POST"])
def login_page():
    form, error = {}, None
    if request.method == "POST":
        form = request.form
        try:
            user = accounts.authenticate(
                dbs(),
                email=form.get("email"),
                password=form.get("password"),
                client=sign_in_client(),
                ip=client_ip(),
            )
            dbs().commit()
            _sign_in(user)
            return remember_device(redirect(next_page(user)), user)
        except UserFacingError as exc:
            dbs().rollback()
            error = exc
    return render_template("login.html", form=form, error=error, next=request.values.get("next", "")), (
        error.status if error else 200
    )


@bp.get("/verify-email/<token>")
def verify_email_page(token: str):
    """The link in the confirmation email shows what it confirms and a button: opening it alone
    (a mail scanner fetching every link) confirms nothing."""
    user = verification.account_of(dbs(), settings().secret_key, token)
    return render_template("verify_email.html", user=user, token=token)


@bp.post("/verify-email/<token>")
def confirm_email(token: str):
    """No sign-in needed: the signed link is the proof of the mailbox."""
    user = verification.confirm(dbs(), settings().secret_key, token, ip=client_ip())
    dbs().commit()
    return render_template("verified.html", email=user.email, signed_in=current_user.is_authenticated)


@bp.post("/verify-email/resend")
@login_required
@limiter.limit(VERIFY_RESEND_LIMIT)
def resend_verification_page():
    _ask_for_verification_link()
    return redirect(url_for("dashboard.show", sent="verification"))


@bp.post("/logout")
def logout():
    _sign_out()
    return redirect(url_for("pages.home"))


@bp.route("/signup/details", methods=["GET", "POST"])
@login_required
@limiter.shared_limit(DETAILS_LIMIT, scope="details", methods=["POST"])
def details_page():
    user, error = current(), None
    form = {"email": user.email or ""}
    if request.method == "POST":
        form = request.form
        try:
            accounts.complete_details(
                dbs(), user, email=form.get("email"), accept_terms=form.get("terms") == "on", ip=client_ip()
            )
            dbs().commit()
            return redirect(url_for("dashboard.show"))
        except UserFacingError as exc:
            dbs().rollback()
            error = exc
    return render_template("details.html", form=form, error=error), (error.status if error else 200)


# JSON -----------------------------------------------------------------------------------------


@bp.get("/api/auth/csrf")
def csrf_token():
    return jsonify(csrfToken=generate_csrf())


@bp.post("/api/auth/register")
@limiter.limit(REGISTER_LIMIT)
def register_json():
    body = json_body(name=str, email=str, password=str)
    user = accounts.register(
        dbs(),
        name=body.get("name"),
        email=body.get("email"),
        password=body.get("password"),
        free_beta=grants_free_beta(dbs(), settings()),
        ip=client_ip(),
    )
    dbs().commit()
    _sign_in(user)
    return remember_device(
        jsonify(user=me_json(user), next=next_page(user), csrfToken=generate_csrf()), user
    ), 201


@bp.post("/api/auth/login")
@limiter.shared_limit(LOGIN_LIMIT, scope="sign-in")
def login_json():
    body = json_body(email=str, password=str)
    user = accounts.authenticate(
        dbs(), email=body.get("email"), password=body.get("password"), client=sign_in_client(), ip=client_ip()
    )
    dbs().commit()
    _sign_in(user)
    return remember_device(jsonify(user=me_json(user), next=next_page(user), csrfToken=generate_csrf()), user)


@bp.post("/api/auth/logout")
def logout_json():
    _sign_out()
    return jsonify(ok=True, csrfToken=generate_csrf())


@bp.post("/api/auth/details")
@login_required
@limiter.shared_limit(DETAILS_LIMIT, scope="details")
def details_json():
    body = json_body(email=str, acceptTerms=bool)
    accounts.complete_details(
        dbs(),
        current(),
        email=body.get("email"),
        accept_terms=body.get("acceptTerms") is True,
        ip=client_ip(),
    )
    dbs().commit()
    return jsonify(user=me_json(current()))


@bp.post("/api/auth/verify-email/resend")
@login_required
@limiter.limit(VERIFY_RESEND_LIMIT)
def resend_verification_json():
    _ask_for_verification_link()
    return jsonify(ok=True, sentTo=current().email), 202


def _ask_for_verification_link() -> None:
    """The mail loop sends the link (clawdet/mail/triggers.py); nothing to send is said plainly."""
    user = current()
    if user.email_verified or not user.email:
        raise UserFacingError(
            "nothing_to_verify",
            "Your email address is already confirmed."
            if user.email
            else "Your account has no email address yet.",
            "Nothing to do." if user.email else "Add one on the details page.",
            status=409,
        )
    audit.record(
        dbs(), "user.verify_requested", actor=user, target_type="user", target_id=user.id, ip=client_ip()
    )
    dbs().commit()


@bp.post("/api/auth/sessions/revoke")
@login_required
def revoke_sessions():
    """Sign out everywhere: every other session stops working; this one is renewed."""
    user = current()
    accounts.revoke_sessions(user)
    dbs().commit()
    _sign_in(user)
    return remember_device(jsonify(ok=True, csrfToken=generate_csrf()), user)


@bp.get("/api/auth/me")
@login_required
def me():
    return jsonify(user=me_json(current()))
