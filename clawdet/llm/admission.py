"""Who may ask the LLM proxy (the instance of a bearer key and its owner's plan) and the
database side of the quota: leases of tokens a proxy process holds against an owner's month.

The quota is hard: before a request goes upstream its most possible cost (its prompt's ceiling
plus the answer tokens it may receive) is reserved inside a lease its process holds, and a lease
only grows while recorded usage plus what every live lease of the owner still holds (`granted -
spent`, all processes) stays within the quota, one grower at a time (the owner's row locked on
PostgreSQL, an immediate transaction on SQLite). The recorder adds a request's tokens to the
usage rows and to its lease's `spent` in one transaction (clawdet/llm/recorder.py), so nothing is
counted twice or not at all. The in-memory side is clawdet/llm/ledger.py.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from clawdet.errors import UserFacingError
from clawdet.instances import credentials
from clawdet.instances.lifecycle import DesiredState, InstanceStatus
from clawdet.llm import pricing as llm_pricing
from clawdet.llm import usage as llm_usage
from db.engine import Database
from db.models import Instance, LlmLease, LlmUsage, User, utcnow

# Tokens of a prompt, from above: BPE tokenizers average 3-4 bytes a token in prose, code and
# JSON and about 3 in CJK, so two bytes a token leaves room; an image costs at most a
# high-detail tile grid, a message a few tokens of framing.
PROMPT_BYTES_PER_TOKEN = 2
IMAGE_TOKENS = 1_600
MESSAGE_TOKENS = 8
IMAGE_PARTS = {"image_url", "input_image", "image", "input_audio"}
MAX_CHOICES = 8
LAPSED_KEPT = timedelta(hours=1)  # lapsed leases of a dead process: kept a while for inspection


@dataclass(frozen=True)
class Caller:
    user_id: str
    instance_id: str
    payment_method: str | None
    paid: bool

    @property
    def quota(self) -> int | None:
        return llm_pricing.monthly_quota(self.payment_method, self.paid)


def invalid_key() -> UserFacingError:
    return UserFacingError(
        "invalid_api_key",
        "This API key is not valid.",
        "Use your instance's current key (rotate it from the dashboard).",
        status=401,
    )


def bearer_key(authorization: str | None) -> str:
    scheme, _, key = (authorization or "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def authenticate(database: Database, key: str) -> Caller:
    """The instance of the bearer key and its owner; refused in the proxy's words otherwise."""
    if not key.startswith(credentials.LLM_KEY_PREFIX):
        raise invalid_key()
    with database.engine.connect() as connection:
        row = connection.execute(
            select(
                Instance.id, Instance.desired_state, Instance.status, User.id, User.disabled,
                User.payment_method, User.paid,
            )
            .join(User, User.id == Instance.user_id)
            .where(credentials.accepts_llm_key(credentials.key_hash(key)))
        ).first()  # fmt: skip
    if row is None or row[1] == DesiredState.DESTROYED.value or row[2] == InstanceStatus.DESTROYED.value:
        raise invalid_key()
    if row[4]:
        raise UserFacingError(
            "account_disabled", "The account of this instance is disabled.", "Contact support.", status=403
        )
    return Caller(user_id=row[3], instance_id=row[0], payment_method=row[5], paid=bool(row[6]))


def prompt_ceiling(body: dict) -> int:
    """At least as many tokens as the upstream will count in the request's prompt."""
    total = 0
    for message in body.get("messages") or []:
        total += MESSAGE_TOKENS + _text_tokens(message)
    for extra in ("tools", "functions", "response_format", "prediction"):
        if body.get(extra) is not None:
            total += _text_tokens(body[extra])
    return total


def _text_tokens(value) -> int:
    if isinstance(value, str):
        return -(-len(value.encode()) // PROMPT_BYTES_PER_TOKEN)
    if isinstance(value, dict):
        if value.get("type") in IMAGE_PARTS:
            return IMAGE_TOKENS
        return sum(_text_tokens(key) + _text_tokens(item) for key, item in value.items())
    if isinstance(value, list):
        return sum(_text_tokens(item) for item in value)
    return 1


def asked_max_tokens(body: dict) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserFacingError(
                "invalid_request",
                f"{name} must be a positive whole number.",
                f"Send {name} as a number of tokens, or leave it out.",
            )
        return value
    return None


def choices(body: dict) -> int:
    """How many answers the request asks for (`n`): each may be max_tokens long."""
    value = body.get("n", 1)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CHOICES:
        raise UserFacingError(
            "invalid_request",
            f"n must be a whole number from 1 to {MAX_CHOICES}.",
            "Ask for fewer answers at once, or leave n out.",
        )
    return value


def set_max_tokens(body: dict, max_tokens: int) -> None:
    """Tells the upstream the answer length the reservation covers, in every field it may read."""
    fields = [name for name in ("max_completion_tokens", "max_tokens") if body.get(name) is not None]
    for name in fields or ["max_tokens"]:
        body[name] = max_tokens


@dataclass(frozen=True)
class Grant:
    lease_id: str
    granted: int  # by the lease in all (what it spent included)
    used: int  # the owner's recorded month
    held_elsewhere: int  # by the owner's other live leases (other proxy processes)


def grow_lease(
    database: Database, caller: Caller, lease_id: str | None, want: int, hold_seconds: float
) -> Grant:
    """Grows the lease by up to `want` tokens, as far as the quota allows (not at all when it
    is used up), and keeps it alive for `hold_seconds` more."""
    lease_id = lease_id or secrets.token_hex(16)
    with database.engine.connect() as connection:
        lock_owners(connection, [caller.user_id])
        now = utcnow()
        connection.execute(
            delete(LlmLease).where(
                LlmLease.user_id == caller.user_id, LlmLease.expires_at < now - LAPSED_KEPT
            )
        )
        used, elsewhere = connection.execute(
            select(_recorded_this_month(caller.user_id), _held_elsewhere(caller.user_id, lease_id, now))
        ).one()
        used, elsewhere = int(used), int(elsewhere)  # PostgreSQL sums bigints as numeric
        mine = connection.execute(
            select(LlmLease.granted, LlmLease.spent, LlmLease.expires_at).where(LlmLease.id == lease_id)
        ).first()
        granted, spent = (mine[0], mine[1]) if mine else (0, 0)
        if mine and mine[2] <= now:  # it lapsed: others may have been granted what it held
            want += max(granted - spent, 0)  # so ask for it again, as far as the quota allows
            granted = spent
        holding = max(granted - spent, 0)
        quota = caller.quota
        grant = want if quota is None else max(0, min(want, quota - used - elsewhere - holding))
        values = {"granted": granted + grant, "expires_at": now + timedelta(seconds=hold_seconds)}
        if mine:
            connection.execute(update(LlmLease).where(LlmLease.id == lease_id).values(**values))
        else:
            connection.execute(
                insert(LlmLease).values(id=lease_id, user_id=caller.user_id, spent=0, **values)
            )
        connection.commit()
    return Grant(lease_id, granted + grant, used, elsewhere)


def keep_alive(database: Database, lease_ids: list[str], hold_seconds: float) -> set[str]:
    """Renews the leases that are still live; the ids renewed (a lapsed one must grow afresh)."""
    now = utcnow()
    with database.engine.begin() as connection:
        live = set(
            connection.scalars(
                select(LlmLease.id).where(LlmLease.id.in_(lease_ids), LlmLease.expires_at > now)
            )
        )
        if live:
            connection.execute(
                update(LlmLease)
                .where(LlmLease.id.in_(sorted(live)))
                .values(expires_at=now + timedelta(seconds=hold_seconds))
            )
    return live


def quota_exceeded(grant: Grant, quota: int, need: int) -> UserFacingError:
    if grant.used >= quota:
        return UserFacingError(
            "quota_exceeded",
            f"This month's token quota is used up ({grant.used:,} of {quota:,} tokens).",
            "Wait for the 1st of next month, or upgrade your plan on the dashboard.",
            status=429,
        )
    if grant.held_elsewhere and grant.used + grant.held_elsewhere + need > quota >= grant.used + need:
        return UserFacingError(
            "quota_held",
            "The rest of this month's token quota is held by requests still running.",
            "Try again when they have finished.",
            status=429,
            headers={"Retry-After": "10"},
        )
    return UserFacingError(
        "quota_exceeded",
        f"This month's token quota has {quota - grant.used:,} of {quota:,} tokens left, too few for "
        f"this prompt and its answer (up to {need:,} tokens).",
        "Send a shorter prompt, wait for the 1st of next month, or upgrade your plan on the dashboard.",
        status=429,
    )


def lock_owners(connection: Connection, user_ids: list[str]) -> None:
    """Leases grow, and usage is recorded, one owner at a time (in id order, so two transactions
    never wait for each other): what the next one reads is what the last one wrote."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            select(User.id).where(User.id.in_(sorted(user_ids))).order_by(User.id).with_for_update()
        )
    elif not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite: the write lock before the first read


def _recorded_this_month(user_id: str):
    return (
        select(func.coalesce(func.sum(LlmUsage.prompt_tokens + LlmUsage.completion_tokens), 0))
        .where(LlmUsage.user_id == user_id, LlmUsage.day >= llm_usage.today().replace(day=1))
        .scalar_subquery()
    )


def _held_elsewhere(user_id: str, lease_id: str, now):
    return (
        select(
            func.coalesce(
                func.sum(
                    case((LlmLease.granted > LlmLease.spent, LlmLease.granted - LlmLease.spent), else_=0)
                ),
                0,
            )
        )
        .where(LlmLease.user_id == user_id, LlmLease.id != lease_id, LlmLease.expires_at > now)
        .scalar_subquery()
    )
