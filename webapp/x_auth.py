"""Continue with X: sign up or sign in with an X account, link one to an email account, unlink.

The session holds only the OAuth state (and what to do at the callback); the PKCE verifier is
derived from it with the app secret. Users are written only after X confirmed who they are, so
a refused or broken sign-in leaves nothing behind.
"""

from __future__ import annotations

import time

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from clawdet.accounts import x_client
from clawdet.accounts.free_beta import grants_free_beta
from clawdet.errors import UserFacingError
from db import audit
from db.models import User
from webapp import dbs, settings
from webapp.auth import _sign_in, client_ip, current, next_page
from webapp.security import safe_next

bp = Blueprint("x_auth", __name__)

PENDING = "x_oauth"
PENDING_MAX_AGE = 600  # seconds a sign-in may take at X


class XSignInError(UserFacingError):
    """Shown as a page with a link to start again."""


def _refusal(code: str, message: str, status: int = 400) -> XSignInError:
    return XSignInError(code, message, "Start again with the button below.", status=status)


def _retry_url(link: bool) -> str:
    return url_for("x_auth.login", link=1) if link else url_for("x_auth.login")


@bp.errorhandler(XSignInError)
def _show_refusal(error: XSignInError):
    pending_link = getattr(error, "link", False)
    return render_template(
        "x_error.html",
        error=error,
        retry_url=_retry_url(pending_link),
        back_url=url_for("profile.show") if pending_link else url_for("auth.login_page"),
    ), error.status


@bp.app_context_processor
def _x_button():
    return {"x_login_available": x_client.configured(settings())}


@bp.get("/api/auth/x/login")
def login():
    if not x_client.configured(settings()):
        raise UserFacingError(
            "x_not_configured",
            "Continue with X is not set up on this server.",
            "Sign up with your email instead.",
            status=503,
        )
    link = request.args.get("link") == "1"
    if link and not current_user.is_authenticated:
        return redirect(url_for("auth.login_page", next=url_for("profile.show")))
    state = x_client.new_state()
    session[PENDING] = {
        "state": state,
        "at": int(time.time()),
        "link_user": current().id if link else None,
        "next": safe_next(request.args.get("next"), ""),
    }
    return redirect(x_client.authorize_url(settings(), state))


@bp.get("/api/auth/x/callback")
def callback():
    pending = session.pop(PENDING, None) or {}
    link_user = pending.get("link_user")
    try:
        return _finish(pending, link_user)
    except XSignInError as error:
        dbs().rollback()
        error.link = bool(link_user)
        raise


def _finish(pending: dict, link_user: str | None):
    if request.args.get("error"):
        raise _refusal("x_denied", "You did not allow Clawdet to use your X account.")
    state = request.args.get("state", "")
    if not pending or state != pending.get("state"):
        raise _refusal(
            "x_state_mismatch", "This sign-in did not start in this browser, or it was already finished."
        )
    if time.time() - pending.get("at", 0) > PENDING_MAX_AGE:
        raise _refusal("x_expired", "This sign-in took too long.")
    code = request.args.get("code")
    if not code:
        raise _refusal("x_no_code", "X did not send a sign-in code.")
    try:
        profile = x_client.exchange_code(settings(), code, state)
    except x_client.XRefused:
        raise _refusal(
            "x_code_invalid", "X did not accept this sign-in: the code expired or was already used."
        ) from None
    except x_client.XUnavailable:
        raise _refusal("x_unavailable", "X did not answer. Nothing was changed.", status=502) from None
    if link_user:
        return _link(profile, link_user)
    return _sign_in_with(profile, pending.get("next") or "")


def _apply_profile(user: User, profile: x_client.XProfile) -> None:
    user.x_id, user.x_username, user.x_name = profile.id, profile.username, profile.name
    user.x_profile_image = (profile.profile_image_url or "")[:500] or None


def _sign_in_with(profile: x_client.XProfile, next_url: str):
    db = dbs()
    user = db.scalar(select(User).where(User.x_id == profile.id))
    created = user is None
    if user is None:
        user = User(name=profile.name)
        if grants_free_beta(dbs(), settings()):
            user.mark_free_beta()
        db.add(user)
    elif user.disabled:
        raise _refusal("account_disabled", "This account is disabled.", status=403)
    _apply_profile(user, profile)
    try:
        db.flush()
    except IntegrityError:  # the same X account finished signing up in another tab
        db.rollback()
        user = db.scalar(select(User).where(User.x_id == profile.id))
        if user is None:
            raise
        created = False
    audit.record(
        db,
        "user.register" if created else "user.login",
        actor=user,
        target_type="user",
        target_id=user.id,
        ip=client_ip(),
        via="x",
    )
    db.commit()
    _sign_in(user)
    if not user.details_complete:
        return redirect(url_for("auth.details_page"))
    return redirect(next_url or next_page(user))


def _link(profile: x_client.XProfile, link_user: str):
    if not current_user.is_authenticated or current().id != link_user:
        raise _refusal("x_link_signed_out", "You were signed out before linking finished.")
    db = dbs()
    user = current()
    owner = db.scalar(select(User.id).where(User.x_id == profile.id))
    if owner and owner != user.id:
        raise _refusal(
            "x_already_linked",
            f"The X account @{profile.username} already belongs to another Clawdet account.",
            status=409,
        )
    _apply_profile(user, profile)
    audit.record(
        db,
        "user.x_link",
        actor=user,
        target_type="user",
        target_id=user.id,
        ip=client_ip(),
        x_username=profile.username,
    )
    db.commit()
    return redirect(url_for("profile.show"))


profile_bp = Blueprint("profile", __name__)


@profile_bp.get("/account")
@login_required
def show(error: UserFacingError | None = None):
    return render_template(
        "account.html", user=current(), error=error, x_available=x_client.configured(settings())
    ), (error.status if error else 200)


@profile_bp.post("/account/x/unlink")
@login_required
def unlink():
    user = current()
    if not user.x_id:
        return redirect(url_for("profile.show"), code=303)
    if not user.password_hash:
        return show(
            error=UserFacingError(
                "last_sign_in_method",
                "X is the only way you can sign in to this account.",
                "Keep X linked; unlinking it would lock you out.",
                status=409,
            )
        )
    user.x_id = user.x_username = user.x_name = user.x_profile_image = None
    audit.record(dbs(), "user.x_unlink", actor=user, target_type="user", target_id=user.id, ip=client_ip())
    dbs().commit()
    return redirect(url_for("profile.show"), code=303)
