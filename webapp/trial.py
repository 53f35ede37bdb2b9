"""The homepage trial chat: a few messages per visitor through the platform's upstream.

The limit is counted on the server twice, in the visitor's session and per IP address (kept as
a keyed hash, per UTC day); the higher count wins, and the browser's own count is never asked.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from flask import Blueprint, current_app, jsonify, request, session, url_for
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from clawdet.errors import UserFacingError
from clawdet.llm.usage import today
from db.models import TrialUsage
from webapp import dbs, llm_pool, settings
from webapp.auth import client_ip
from webapp.extensions import network_of

bp = Blueprint("trial", __name__)

SESSION_COUNT = "trial_messages"
MAX_HISTORY = 10
MAX_CHARS = 2000
MAX_REPLY_TOKENS = 400
SYSTEM_PROMPT = (
    "You are the Clawdet demo assistant. Answer briefly. Clawdet gives each customer "
    "their own OpenClaw AI gateway on a dedicated server."
)


def ip_hash() -> str:
    return hmac.new(
        settings().secret_key.encode(), f"trial-ip/{network_of(client_ip())}".encode(), hashlib.sha256
    ).hexdigest()


def _limit_reached() -> tuple:
    limit = settings().trial_messages
    return jsonify(
        error={
            "code": "trial_limit",
            "message": f"That was the last of your {limit} free trial messages.",
            "action": "Create a free account to keep chatting with your own assistant.",
            "link": url_for("auth.signup_page"),
        }
    ), 429


def _ip_count_after_increment(day) -> int:
    db = dbs()
    insert = (postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert)(TrialUsage)
    db.execute(
        insert.values(ip_hash=ip_hash(), day=day, messages=1).on_conflict_do_update(
            index_elements=["ip_hash", "day"], set_={"messages": TrialUsage.messages + 1}
        )
    )
    return db.scalar(
        select(TrialUsage.messages).where(TrialUsage.ip_hash == ip_hash(), TrialUsage.day == day)
    )


def _messages(body) -> list[dict]:
    history = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(history, list) or not history:
        raise UserFacingError(
            "invalid_request",
            "Send the conversation as a list of messages.",
            "Type a message and send it again.",
        )
    cleaned = []
    for message in history[-MAX_HISTORY:]:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            continue
        content = message.get("content")
        if isinstance(content, str) and content.strip():
            cleaned.append({"role": message["role"], "content": content[:MAX_CHARS]})
    if not cleaned or cleaned[-1]["role"] != "user":
        raise UserFacingError(
            "invalid_request", "The last message must be yours.", "Type a message and send it again."
        )
    return [{"role": "system", "content": SYSTEM_PROMPT}, *cleaned]


@bp.post("/api/trial/chat")
def chat():
    messages = _messages(request.get_json(silent=True))
    limit = settings().trial_messages
    session_count = int(session.get(SESSION_COUNT, 0))
    if session_count >= limit:
        return _limit_reached()
    ip_count = _ip_count_after_increment(today())
    if ip_count > limit:
        dbs().rollback()
        return _limit_reached()
    dbs().commit()  # the message is counted before the upstream is asked
    session[SESSION_COUNT] = session_count + 1
    body = {"model": settings().trial_model, "messages": messages, "max_tokens": MAX_REPLY_TOKENS}
    upstream = llm_pool(current_app).open("POST", "/chat/completions", json.dumps(body).encode())
    try:
        answer = json.loads(upstream.read()) if upstream.status_code == 200 else None
    except ValueError:
        answer = None
    finally:
        upstream.close()
    try:
        reply = answer["choices"][0]["message"]["content"]
    except (TypeError, KeyError, IndexError):
        raise UserFacingError(
            "upstream_unavailable",
            "The demo assistant could not answer.",
            "Try again in a minute.",
            status=502,
        ) from None
    used = max(session_count + 1, ip_count)
    return jsonify(reply=reply, remaining=max(0, limit - used))
