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
from sqlalchemy import func, select

from clawdet.errors import UserFacingError
from clawdet.instances import credentials
from clawdet.instances.lifecycle import DesiredState, InstanceStatus
from clawdet.llm import pricing as llm_pricing
from clawdet.llm import usage as llm_usage
from clawdet.llm.recorder import UsageEntry, UsageRecorder
from db.models import Instance, LlmUsage, User
from webapp import dbs, llm_pool, settings, usage_recorder
from webapp.bodies import json_body
from webapp.extensions import csrf, limiter

log = logging.getLogger(__name__)

bp = Blueprint("llm_proxy", __name__, url_prefix="/llm/v1")
csrf.exempt(bp)  # machine clients with a bearer key; there is no cookie to ride on

PASSED_HEADERS = ("Content-Type", "Cache-Control", "x-request-id")
# The caller's own mistakes pass through as the upstream words them; anything else is ours to
# word, since an upstream's error body may name the platform's key or its account.
CLIENT_ERRORS = {400, 404, 413, 422}


def upstream_failed(status: int) -> UserFacingError:
    log.warning("llm upstream answered HTTP %d", status)
    return UserFacingError(
        "upstream_error",
        "The language model could not answer this request.",
        "Try again in a minute.",
        status=502,
    )


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
    month_tokens: int


def authenticate() -> Caller:
    """The instance of the bearer key and its owner's tokens this month, in one query."""
    key = bearer_key()
    refused = UserFacingError(
        "invalid_api_key",
        "This API key is not valid.",
        "Use your instance's current key (rotate it from the dashboard).",
        status=401,
    )
    if not key.startswith(credentials.LLM_KEY_PREFIX):
        raise refused
    month_tokens = (
        select(func.coalesce(func.sum(LlmUsage.prompt_tokens + LlmUsage.completion_tokens), 0))
        .where(LlmUsage.user_id == User.id, LlmUsage.day >= llm_usage.today().replace(day=1))
        .scalar_subquery()
    )
    row = (
        dbs()
        .execute(
            select(
                Instance.id,
                Instance.desired_state,
                Instance.status,
                User.id,
                User.disabled,
                User.payment_method,
                User.paid,
                month_tokens,
            )
            .join(User, User.id == Instance.user_id)
            .where(credentials.accepts_llm_key(credentials.key_hash(key)))
        )
        .first()
    )
    dbs().rollback()  # hold no database connection while the upstream works
    if row is None or row[1] == DesiredState.DESTROYED.value or row[2] == InstanceStatus.DESTROYED.value:
        raise refused
    if row[4]:
        raise UserFacingError(
            "account_disabled", "The account of this instance is disabled.", "Contact support.", status=403
        )
    return Caller(
        user_id=row[3], instance_id=row[0], payment_method=row[5], paid=row[6], month_tokens=int(row[7])
    )


def check_quota(caller: Caller) -> None:
    quota = llm_pricing.monthly_quota(caller.payment_method, caller.paid)
    if quota is not None and caller.month_tokens >= quota:
        raise UserFacingError(
            "quota_exceeded",
            f"This month's token quota is used up ({caller.month_tokens:,} of {quota:,} tokens).",
            "Wait for the 1st of next month, or upgrade your plan on the dashboard.",
            status=429,
        )


def _chat_body() -> tuple[dict, str, bool]:
    body = json_body(model=str, messages=list, stream=bool, stream_options=dict)
    if not body.get("model"):
        raise UserFacingError(
            "invalid_request",
            "The body must be a JSON object with a model.",
            "Send an OpenAI chat completion request.",
        )
    stream = bool(body.get("stream"))
    if stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return body, body["model"], stream


@bp.post("/chat/completions")
@limiter.limit(lambda: settings().llm_rate_limit, key_func=_rate_key)
def chat_completions():
    caller = authenticate()
    check_quota(caller)
    body, model, stream = _chat_body()
    meter = Meter(usage_recorder(current_app), caller, model)
    upstream = llm_pool(current_app).open("POST", "/chat/completions", json.dumps(body).encode())
    headers = {name: upstream.headers[name] for name in PASSED_HEADERS if name in upstream.headers}
    if not stream or upstream.status_code != 200:
        try:
            content = upstream.read()
        finally:
            upstream.close()
        if upstream.status_code == 200:
            meter.record(_usage_of(content))
        elif upstream.status_code not in CLIENT_ERRORS:
            raise upstream_failed(upstream.status_code)
        return Response(content, status=upstream.status_code, headers=headers)
    headers["X-Accel-Buffering"] = "no"
    return Response(_relay(upstream, meter), status=200, headers=headers)


def _usage_of(content: bytes) -> dict | None:
    try:
        usage = json.loads(content).get("usage")
    except (ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


def _relay(upstream, meter: Meter):
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
    """Hands one request's tokens to the background recorder once the upstream reported them."""

    def __init__(self, usage_recorder: UsageRecorder, caller: Caller, model: str):
        self.usage_recorder, self.caller, self.model = usage_recorder, caller, model

    def record(self, usage: dict | None) -> None:
        if usage is None:
            log.warning(
                "llm upstream sent no usage for instance %s model %s", self.caller.instance_id, self.model
            )
        usage = usage or {}
        self.usage_recorder.submit(
            UsageEntry(
                user_id=self.caller.user_id,
                instance_id=self.caller.instance_id,
                payment_method=self.caller.payment_method,
                paid=self.caller.paid,
                model=self.model,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                used_before=self.caller.month_tokens,
            )
        )


@bp.get("/models")
@limiter.limit(lambda: settings().llm_rate_limit, key_func=_rate_key)
def models():
    authenticate()
    upstream = llm_pool(current_app).open("GET", "/models")
    try:
        content = upstream.read()
    finally:
        upstream.close()
    if upstream.status_code != 200:
        raise upstream_failed(upstream.status_code)
    return Response(content, status=upstream.status_code, headers={"Content-Type": "application/json"})
