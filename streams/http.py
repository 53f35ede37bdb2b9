"""What every route of the stream server shares: its services, reading a JSON body within a
size limit, and errors as `{error: {code, message, action}}` (never a stack trace)."""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from clawdet.bodies import checked
from clawdet.errors import UserFacingError

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # as the web app's MAX_CONTENT_LENGTH
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def services(request: Request):
    return request.app.state.services


async def json_body(request: Request, **fields: type) -> dict:
    """The request's JSON object (at most MAX_BODY bytes), its named fields of their types."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise too_large()
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise too_large()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return checked(body, **fields)


def too_large() -> UserFacingError:
    return UserFacingError(
        "too_large", "That request is too large (at most 1 MiB).", "Send less data.", status=413
    )


async def error_response(_request: Request, error: UserFacingError) -> JSONResponse:
    return JSONResponse(
        {"error": error.as_dict()}, status_code=error.status, headers={**NO_STORE, **error.headers}
    )


PLAIN = {
    404: ("not_found", "There is nothing here.", "Check the address."),
    405: ("method_not_allowed", "That method is not available here.", "Check the method (GET or POST)."),
}


async def http_error(request: Request, error: HTTPException) -> JSONResponse:
    code, message, action = PLAIN.get(
        error.status_code, ("bad_request", "The request could not be understood.", "Check what you sent.")
    )
    refused = UserFacingError(
        code, message, action, status=error.status_code, headers=dict(error.headers or {})
    )
    return await error_response(request, refused)


async def unexpected_error(request: Request, _error: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return await error_response(
        request,
        UserFacingError(
            "internal_error",
            "Something went wrong on our side.",
            "Try again in a minute; we have been told.",
            status=500,
        ),
    )
