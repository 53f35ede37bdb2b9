"""The control plane's tables. Times are stored in UTC and always come back timezone-aware."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


class UTCDateTime(TypeDecorator[datetime]):
    """SQLite has no time zones; store naive UTC everywhere and hand back aware datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Installation(Base):
    """One row: this installation's id (see Database.installation_id)."""

    __tablename__ = "installation"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)


class Role(str, enum.Enum):
    USER = "user"
    ADMIN = "admin"


class PaymentMethod(str, enum.Enum):
    FREE_BETA = "free_beta"
    STRIPE = "stripe"
    PAYPAL = "paypal"


class Tier(str, enum.Enum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("user"))
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(100))
    x_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    x_username: Mapped[str | None] = mapped_column(String(64))
    x_name: Mapped[str | None] = mapped_column(String(100))
    x_profile_image: Mapped[str | None] = mapped_column(String(500))
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    email_set_at: Mapped[datetime | None]  # an unverified address holds its claim a day at most
    terms_accepted_at: Mapped[datetime | None]
    role: Mapped[str] = mapped_column(String(16), default=Role.USER.value)
    paid: Mapped[bool] = mapped_column(Boolean, default=False)
    payment_method: Mapped[str | None] = mapped_column(String(16))
    paid_at: Mapped[datetime | None]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    instances: Mapped[list[Instance]] = relationship(back_populates="user")

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value

    @property
    def details_complete(self) -> bool:
        return bool(self.email) and self.terms_accepted_at is not None

    def mark_free_beta(self) -> None:
        self.paid = True
        self.payment_method = PaymentMethod.FREE_BETA.value
        self.paid_at = utcnow()


class LoginThrottle(Base):
    """Failed sign-ins under one key of clawdet/accounts/throttle.py (a hash), and its back-off."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebSession(Base):
    """One signed-in browser. Its id is in the session cookie; signing out deletes the row, so a
    copy of the cookie stops working with it."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: secrets.token_urlsafe(24))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("inst"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    stack_name: Mapped[str] = mapped_column(String(100), unique=True)
    subdomain: Mapped[str] = mapped_column(String(63), unique=True)
    tier: Mapped[str] = mapped_column(String(16), default=Tier.FREE.value)
    region: Mapped[str] = mapped_column(String(16), default="hel1")
    # The values of desired_state, status, health, requested_action and events' kind are the enums
    # of clawdet/instances/lifecycle.py, the one module that writes them.
    desired_state: Mapped[str] = mapped_column(String(16), default="running")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_message: Mapped[str] = mapped_column(Text, default="Waiting for a worker")
    requested_action: Mapped[str | None] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    observed_generation: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    server_id: Mapped[str | None] = mapped_column(String(32))
    volume_id: Mapped[str | None] = mapped_column(String(32))
    config_hash: Mapped[str | None] = mapped_column(String(32))  # the app layer last deployed
    openclaw_image: Mapped[str | None] = mapped_column(String(255))  # what runs (the stack's output)
    # What should run: set at the first converge from OPENCLAW_IMAGE, then moved only by a rollout
    # or an operator's pin (clawdet/rollouts). A pinned instance is left out of rollouts.
    desired_image: Mapped[str | None] = mapped_column(String(255))
    image_pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # The Hetzner image of its server: a golden snapshot's id (digits) or the stock image's name,
    # chosen at the first converge and kept; NULL for instances made before (the stock image).
    server_image: Mapped[str | None] = mapped_column(String(64))
    # The warm-pool member its server, volume and firewall came from (clawdet/reconciler/pool.py)
    adopted_from: Mapped[str | None] = mapped_column(String(64))
    rollout_id: Mapped[str | None] = mapped_column(String(64))  # the rollout updating it now
    # programs.instance_config.infrastructure_digest of the last converged config
    infrastructure_digest: Mapped[str | None] = mapped_column(String(64))
    restarts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ipv4: Mapped[str | None] = mapped_column(String(45))
    ipv6: Mapped[str | None] = mapped_column(String(64))
    dns_record_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(String(255))
    llm_key_version: Mapped[int] = mapped_column(Integer, default=1)
    llm_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    llm_key_previous_hash: Mapped[str | None] = mapped_column(String(64), index=True)  # until rolled out
    gateway_token_version: Mapped[int] = mapped_column(Integer, default=1)
    # Issued before the credential roots: an HMAC of SECRET_KEY until rotated (credentials.py)
    llm_key_legacy: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    gateway_token_legacy: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    health: Mapped[str] = mapped_column(String(16), default="unknown")
    health_checked_at: Mapped[datetime | None]
    health_changed_at: Mapped[datetime | None]
    health_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    ready_at: Mapped[datetime | None]
    destroyed_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="instances")
    events: Mapped[list[InstanceEvent]] = relationship(
        back_populates="instance", cascade="all, delete-orphan", order_by="InstanceEvent.id"
    )

    __table_args__ = (
        Index("ix_instances_work_queue", "status", "next_attempt_at"),
        # One instance per user, held by the database itself (two requests at once cannot both win).
        Index(
            "uq_instances_one_active_per_user",
            "user_id",
            unique=True,
            sqlite_where=text("status != 'destroyed'"),
            postgresql_where=text("status != 'destroyed'"),
        ),
    )

    @property
    def is_active(self) -> bool:
        return self.desired_state == "running"


class InstanceEvent(Base):
    __tablename__ = "instance_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(16), default="progress")
    step: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    progress: Mapped[int | None] = mapped_column(Integer)
    generation: Mapped[int | None] = mapped_column(Integer)

    instance: Mapped[Instance] = relationship(back_populates="events")


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LlmUsage(Base):
    """Tokens the LLM proxy passed, per user, instance, model and UTC day (one row, upserted)."""

    __tablename__ = "llm_usage"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (Index("ix_llm_usage_user_day", "user_id", "day"),)


class LlmLease(Base):
    """Tokens one proxy process may hand out to an owner's requests without asking the database.
    `granted - spent` counts against the owner's monthly quota (what was spent is in llm_usage)
    until the lease is given back, or lapses at `expires_at` because its process died."""

    __tablename__ = "llm_leases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: secrets.token_hex(16))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    granted: Mapped[int] = mapped_column(BigInteger, default=0)
    spent: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime] = mapped_column()


class QuotaWarning(Base):
    """A user passed a share of the monthly token quota; the dashboard shows it, email sends it."""

    __tablename__ = "quota_warnings"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2026-11"
    percent: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens_used: Mapped[int] = mapped_column(BigInteger)
    quota: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    emailed_at: Mapped[datetime | None]


class TrialUsage(Base):
    """Homepage trial messages per visitor IP (stored as a keyed hash) and UTC day."""

    __tablename__ = "trial_usage"

    ip_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    messages: Mapped[int] = mapped_column(Integer, default=0)


class OutboxStatus(str, enum.Enum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after the last attempt


class OutboxEmail(Base):
    """An email waiting to be sent, or sent: written in the transaction that decided to send it,
    so a crash never loses or duplicates a decision; a sender loop delivers with retries."""

    __tablename__ = "outbox_emails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    instance_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # At most one email per key ("welcome:user_x"); NULL for kinds that may repeat.
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_outbox_emails_due", "status", "next_attempt_at"),)


class OpsCounter(Base):
    """Monotonic counters the worker processes record and `/metrics` reads: one row per metric
    name and label set (labels as sorted `k=v` pairs joined by commas)."""

    __tablename__ = "ops_counters"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    labels: Mapped[str] = mapped_column(String(200), primary_key=True, default="")
    value: Mapped[float] = mapped_column(default=0.0)


class Rollout(Base):
    """A release (an OpenClaw image) for a cohort of instances, planned, approved and executed in
    waves behind a health gate. The values of `status` are clawdet/rollouts' RolloutStatus."""

    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("ro"))
    image: Mapped[str] = mapped_column(String(255))
    cohort: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="planned", index=True)
    allow_replace: Mapped[bool] = mapped_column(Boolean, default=False)
    canary: Mapped[int] = mapped_column(Integer, default=1)
    waves: Mapped[list[int]] = mapped_column(JSON, default=list)  # cumulative percentages
    soak_seconds: Mapped[int] = mapped_column(Integer, default=300)
    failure_budget: Mapped[float] = mapped_column(default=5.0)  # percent of finished, after the canary
    gate_seconds: Mapped[int] = mapped_column(Integer, default=180)
    totals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    members: Mapped[list[RolloutInstance]] = relationship(
        back_populates="rollout", cascade="all, delete-orphan", order_by="RolloutInstance.wave"
    )


class RolloutInstance(Base):
    """One instance's part in a rollout: its wave (0 is the canary), what the plan saw and what
    happened. The values of `state` are clawdet/rollouts' MemberState."""

    __tablename__ = "rollout_instances"

    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True)
    stack_name: Mapped[str] = mapped_column(String(100))
    wave: Mapped[int] = mapped_column(Integer)
    planned: Mapped[str] = mapped_column(String(16))  # update, replace, no change
    fingerprint: Mapped[str] = mapped_column(String(64))
    previous_image: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    generation: Mapped[int | None] = mapped_column(Integer)  # the instance's, when its update began
    message: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    rollout: Mapped[Rollout] = relationship(back_populates="members")

    __table_args__ = (Index("ix_rollout_instances_state", "rollout_id", "state"),)


class OperationRequest(Base):
    """The request id of the web request that asked for an instance's current operation, so the
    worker's log lines for that operation carry it."""

    __tablename__ = "operation_requests"

    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    generation: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class PlatformCheck(Base):
    """What a worker last found of the parts only workers hold the credentials for (the state
    backend, the cloud APIs); `/api/health` on the web app reads it (ops/platform_health.py)."""

    __tablename__ = "platform_checks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(String(500))
    action: Mapped[str | None] = mapped_column(String(500))
    checked_at: Mapped[datetime]


class PeriodicRun(Base):
    """When a fleet-wide job (the fleet scan) last started, and on which worker: one run per
    period for the whole fleet, whatever the number of workers (clawdet/instances/leases.py)."""

    __tablename__ = "periodic_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime]
    owner: Mapped[str] = mapped_column(String(100))


class Backup(Base):
    """One backup of an instance's gateway state: OpenClaw's archive, encrypted with the instance's
    key (`key_version`), in the backup bucket at `object_key` (clawdet/backups)."""

    __tablename__ = "backups"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("bk"))
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # clawdet/backups/service.py: Kind
    status: Mapped[str] = mapped_column(String(16), default="running")  # running, succeeded, failed, deleted
    message: Mapped[str] = mapped_column(Text, default="")
    object_key: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int | None] = mapped_column(BigInteger)  # bytes stored (encrypted)
    archive_size: Mapped[int | None] = mapped_column(BigInteger)  # bytes of OpenClaw's archive
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    verified: Mapped[bool | None] = mapped_column(Boolean)  # `openclaw backup verify`, then each check
    verify_message: Mapped[str] = mapped_column(Text, default="")
    verified_at: Mapped[datetime | None]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]  # a final backup's end
    deleted_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_backups_instance_started", "instance_id", "started_at"),)


class BackupRequest(Base):
    """An owner's restore or export, asked for in the web app and carried out by a worker (which
    holds the backup keys): queued, running, done or failed (clawdet/backups/requests.py)."""

    __tablename__ = "backup_requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("bkr"))
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # restore, export
    backup_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    message: Mapped[str] = mapped_column(Text, default="")
    progress: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # percent, for the page
    link: Mapped[str | None] = mapped_column(Text)  # an export's download address, until link_expires_at
    link_expires_at: Mapped[datetime | None]
    requested_by: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(100))  # the worker running it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class PoolServer(Base):
    """A warm-pool member: a booted server with its volume and firewall, made by its own stack of
    the instance program (`pool_<id>`), for a new instance of its tier and region to adopt
    (clawdet/reconciler/pool.py has the states). A member that fails is destroyed, never handed
    out."""

    __tablename__ = "pool_servers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: secrets.token_hex(5))
    tier: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    server_image: Mapped[str] = mapped_column(String(64))  # a golden snapshot's id or the stock image
    openclaw_image: Mapped[str] = mapped_column(String(255))  # pulled on it (or on its snapshot)
    # infrastructure_digest of its stack config: another one (settings, program) makes it outdated
    config_digest: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="creating")
    message: Mapped[str] = mapped_column(Text, default="")
    server_id: Mapped[str | None] = mapped_column(String(32))
    volume_id: Mapped[str | None] = mapped_column(String(32))
    firewall_id: Mapped[str | None] = mapped_column(String(32))
    ipv4: Mapped[str | None] = mapped_column(String(64))
    instance_id: Mapped[str | None] = mapped_column(String(64))  # the instance adopting it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)  # its status since (database clock)
    ready_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_pool_servers_fit", "status", "tier", "region"),)
