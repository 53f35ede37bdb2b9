"""Errors as pages for people and `{error: {code, message, action}}` for JSON clients; never a
stack trace."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, make_response, render_template, request
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from clawdet.errors import UserFacingError

log = logging.getLogger(__name__)

PLAIN = {
    400: ("bad_request", "The request could not be understood.", "Check what you sent and try again."),
    401: ("not_signed_in", "You need to sign in first.", "Sign in, then try again."),
    403: ("forbidden", "You are not allowed to do that.", "Go back to your dashboard."),
    404: ("not_found", "There is nothing here.", "Check the address, or go back to your dashboard."),
    405: ("method_not_allowed", "That action is not available here.", "Go back and use the page's buttons."),
    413: ("too_large", "That request is too large.", "Send less data."),
    429: ("rate_limited", "Too many requests.", "Wait a minute, then try again."),
    500: ("internal_error", "Something went wrong on our side.", "Try again in a minute; we have been told."),
    503: ("unavailable", "The service is not available right now.", "Try again in a minute."),
}


def wants_json() -> bool:
    if request.path.startswith(("/api/", "/llm/")):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def render_error(error: UserFacingError):
    if wants_json():
        response = jsonify(error=error.as_dict())
    else:
        response = make_response(render_template("error.html", error=error))
    response.status_code = error.status
    for key, value in error.headers.items():
        response.headers[key] = value
    return response


def from_status(status: int, **overrides) -> UserFacingError:
    code, message, action = PLAIN.get(status, PLAIN[500] if status >= 500 else PLAIN[400])
    return UserFacingError(
        overrides.get("code", code),
        overrides.get("message", message),
        overrides.get("action", action),
        status=status,
    )


def install_error_handlers(app: Flask) -> None:
    app.register_error_handler(UserFacingError, render_error)

    @app.errorhandler(CSRFError)
    def _csrf(_error):
        return render_error(
            UserFacingError(
                "csrf_failed",
                "The form expired or was not sent from this site.",
                "Reload the page and submit again (JSON clients: send X-CSRFToken from GET /api/auth/csrf).",
                status=400,
            )
        )

    @app.errorhandler(RateLimitExceeded)
    def _rate(error):
        response = render_error(from_status(429, message=f"Too many requests ({error.description})."))
        return response

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        return render_error(from_status(error.code or 500))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_error(from_status(500))
