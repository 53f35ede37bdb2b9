"""The OpenAI-compatible LLM proxy for customer instances: `/llm/v1/chat/completions` and
`/llm/v1/models`, authenticated by the instance's own key, metered and capped per user.

Streams pass through chunk by chunk (waitress sends each chunk as it is yielded); the final
usage chunk, which we ask the upstream for, is read on the way to record the tokens.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, request
from sqlalchemy import select

from db.engine import Database
from db.errors import UserFacingError
from db.models import DesiredState, Instance, InstanceStatus, User
from provisioner import credentials, llm_pricing, llm_usage
from webapp import database, dbs, settings
from webapp.extensions import csrf, limiter
from webapp.llm_upstream import pool

log = logging.getLogger(__name__)

bp = Blueprint("llm_proxy", __name__, url_prefix="/llm/v1")
csrf.exempt(bp)  # machine clients with a bearer key; there is no cookie to ride on

PASSED_HEADERS = ("Content-Type", "Cache-Control", "x-request-id")


def bearer_key() -> str:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _rate_key() -> str:
    return "llm:" + credentials.key_hash(bearer_key())


@dataclass(frozen=True)
class Caller:
    user_id: str
    instance_id: str
    payment_method: str | None
    paid: bool


def authenticate() -> Caller:
    key = bearer_key()
    refused = UserFacingError("invalid_api_key", "This API key is not valid.",
                              "Use your instance's current key (rotate it from the dashboard).", status=401)
    if not key.startswith(credentials.LLM_KEY_PREFIX):
        raise refused
    row = dbs().execute(
        select(Instance.id, Instance.desired_state, Instance.status, User.id, User.disabled,
               User.payment_method, User.paid)
        .join(User, User.id == Instance.user_id)
        .where(Instance.llm_key_hash == credentials.key_hash(key))).first()
    if row is None or row[1] == DesiredState.DESTROYED.value or row[2] == InstanceStatus.DESTROYED.value:
        raise refused
    if row[4]:
        raise UserFacingError("account_disabled", "The account of this instance is disabled.",
                              "Contact support.", status=403)
    return Caller(user_id=row[3], instance_id=row[0], payment_method=row[5], paid=row[6])


def check_quota(caller: Caller) -> int:
    """Tokens used this month; refuses when the plan's monthly quota is spent."""
    quota = llm_pricing.monthly_quota(caller.payment_method, caller.paid)
    used = llm_usage.month_tokens(dbs(), caller.user_id)
    if quota is not None and used >= quota:
        raise UserFacingError(
            "quota_exceeded", f"This month's token quota is used up ({used:,} of {quota:,} tokens).",
            "Wait for the 1st of next month, or upgrade your plan on the dashboard.", status=429)
    return used


def _chat_body() -> tuple[dict, str, bool]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        raise UserFacingError("invalid_request", "The body must be a JSON object with a model.",
                              "Send an OpenAI chat completion request.")
    stream = bool(body.get("stream"))
    if stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return body, body["model"], stream


@bp.post("/chat/completions")
@limiter.limit(lambda: settings().llm_rate_limit, key_func=_rate_key)
def chat_completions():
    caller = authenticate()
    used = check_quota(caller)
    body, model, stream = _chat_body()
    dbs().rollback()  # hold no database connection while the upstream works
    meter = Meter(database(), caller, model, used)
    upstream = pool(current_app).open("POST", "/chat/completions", json.dumps(body).encode())
    headers = {name: upstream.headers[name] for name in PASSED_HEADERS if name in upstream.headers}
    if not stream or upstream.status_code != 200:
        try:
            content = upstream.read()
        finally:
            upstream.close()
        if upstream.status_code == 200:
            meter.record(_usage_of(content))
        return Response(content, status=upstream.status_code, headers=headers)
    headers["X-Accel-Buffering"] = "no"
    return Response(_relay(upstream, meter), status=200, headers=headers)


def _usage_of(content: bytes) -> dict | None:
    try:
        usage = json.loads(content).get("usage")
    except (ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


def _relay(upstream, meter: "Meter"):
    usage, tail = None, b""
    try:
        for chunk in upstream.iter_raw():
            yield chunk
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for line in lines:
                if b'"prompt_tokens"' in line and line.startswith(b"data: "):
                    usage = _usage_of(line[6:]) or usage
    finally:
        upstream.close()
        meter.record(usage)


class Meter:
    """Records one request's tokens after the response, in its own transaction."""

    def __init__(self, db: Database, caller: Caller, model: str, used_before: int):
        self.db, self.caller, self.model, self.used_before = db, caller, model, used_before

    def record(self, usage: dict | None) -> None:
        if usage is None:
            log.warning("llm upstream sent no usage for instance %s model %s", self.caller.instance_id, self.model)
        prompt = int((usage or {}).get("prompt_tokens") or 0)
        completion = int((usage or {}).get("completion_tokens") or 0)
        try:
            with self.db.session() as session:
                llm_usage.record(session, user_id=self.caller.user_id, instance_id=self.caller.instance_id,
                                 model=self.model, prompt_tokens=prompt, completion_tokens=completion)
                llm_usage.warn_if_near_quota(session, self.caller.user_id, self.caller.payment_method,
                                             self.caller.paid, self.used_before + prompt + completion)
        except Exception:  # the answer went out; losing one usage row must not break the stream
            log.exception("could not record llm usage for instance %s", self.caller.instance_id)


@bp.get("/models")
@limiter.limit(lambda: settings().llm_rate_limit, key_func=_rate_key)
def models():
    authenticate()
    dbs().rollback()
    upstream = pool(current_app).open("GET", "/models")
    try:
        content = upstream.read()
    finally:
        upstream.close()
    return Response(content, status=upstream.status_code, headers={"Content-Type": "application/json"})
