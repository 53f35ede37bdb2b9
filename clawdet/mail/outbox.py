"""Email: a durable outbox and the sender that drains it.

Deciding to send an email is a row in `outbox_emails`, written in the caller's transaction, so
it happens exactly when the decision commits. A sender (a loop in the worker, or `clawdet
send-mail` once) claims due rows with a short lease, talks SMTP with a timeout, and retries a
failure with doubling backoff until `mail_max_attempts`, then marks the row failed.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from clawdet.logs import current_request_id
from clawdet.settings import Settings
from db.engine import Database
from db.models import OutboxEmail, OutboxStatus, User, utcnow

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
SEND_LEASE = timedelta(minutes=5)
BACKOFF_BASE = 30.0
BACKOFF_CAP = 3600.0

SUBJECTS = {
    "verify_email": "Confirm your email address for Clawdet",
    "welcome": "Welcome to Clawdet",
    "instance_ready": "Your instance {subdomain} is ready",
    "instance_failed": "We could not set up your instance {subdomain}",
    "health_down": "Your instance {subdomain} is down",
    "health_up": "Your instance {subdomain} is back up",
    "quota_warning": "You have used {percent}% of your monthly AI tokens",
    "rollout_halted": "Rollout {rollout_id} halted",
    "backups_failed": "Nightly backups need attention on {day} ({count})",
}

_environment = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(kind: str, context: dict[str, Any]) -> Rendered:
    if kind not in SUBJECTS:
        raise ValueError(f"unknown email kind {kind!r}")
    return Rendered(
        subject=SUBJECTS[kind].format(**context),
        text=_environment.get_template(f"{kind}.txt").render(**context),
        html=_environment.get_template(f"{kind}.html").render(**context),
    )


VERIFY_KIND = "verify_email"


def _verified(session: Session, user_id: str | None, to_address: str) -> bool:
    with session.no_autoflush:
        verified = session.scalar(
            select(User.email_verified).where(User.email == to_address, User.id == user_id)
            if user_id
            else select(User.email_verified).where(User.email == to_address)
        )
    return bool(verified) or (verified is None and user_id is None)  # an operator's address (no account)


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(OutboxEmail)


def enqueue(
    session: Session,
    kind: str,
    to_address: str | None,
    context: dict[str, Any],
    *,
    user_id: str | None = None,
    instance_id: str | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """Queue one email in the caller's transaction; False when there is no address, when it is
    an account's address not yet verified (it gets only the link that verifies it), or when an
    email with the same `dedupe_key` was queued before."""
    if not to_address:
        return False
    if kind != VERIFY_KIND and not _verified(session, user_id, to_address):
        log.info("not sending %s: the address of %s is not verified yet", kind, user_id)
        return False
    message = render(kind, context)
    statement = _insert(session).values(
        kind=kind,
        to_address=to_address,
        subject=message.subject,
        text_body=message.text,
        html_body=message.html,
        user_id=user_id,
        instance_id=instance_id,
        dedupe_key=dedupe_key,
        status=OutboxStatus.PENDING.value,
        attempts=0,
        request_id=current_request_id(),
        created_at=utcnow(),
    )
    inserted = session.execute(statement.on_conflict_do_nothing().returning(OutboxEmail.id)).scalar()
    return inserted is not None


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE * 2 ** (attempts - 1), BACKOFF_CAP))


class MailNotConfigured(RuntimeError):
    pass


class SmtpTransport:
    """One SMTP conversation per batch; every call has the configured timeout."""

    def __init__(self, settings: Settings):
        if not settings.smtp_host:
            raise MailNotConfigured("SMTP_HOST is not set")
        self.settings = settings

    def open(self) -> smtplib.SMTP:
        s = self.settings
        client = smtplib.SMTP(
            s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, local_hostname=socket.getfqdn() or "localhost"
        )
        if s.smtp_starttls:
            client.starttls(context=ssl.create_default_context())
        if s.smtp_user:
            client.login(s.smtp_user, s.smtp_password)
        return client


def build_message(row: OutboxEmail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.to_address
    message["Subject"] = row.subject
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].rstrip(">") or None)
    message["X-Clawdet-Kind"] = row.kind
    message.set_content(row.text_body)
    message.add_alternative(row.html_body, subtype="html")
    return message


@dataclass
class DrainReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0

    def line(self) -> str:
        return f"mail  sent={self.sent} retry_later={self.retried} failed={self.failed}"


def _due(now):
    return and_(
        OutboxEmail.status == OutboxStatus.PENDING.value,
        or_(OutboxEmail.next_attempt_at.is_(None), OutboxEmail.next_attempt_at <= now),
    )


def claim_due(database: Database, limit: int = 20) -> list[int]:
    """Take a lease on up to `limit` due emails (a conditional UPDATE each), so two senders
    never send the same email."""
    now = utcnow()
    claimed: list[int] = []
    with database.session() as session:
        ids = session.scalars(
            select(OutboxEmail.id).where(_due(now)).order_by(OutboxEmail.id).limit(limit)
        ).all()
        for email_id in ids:
            taken = session.execute(
                update(OutboxEmail)
                .where(OutboxEmail.id == email_id, _due(now))
                .values(next_attempt_at=now + SEND_LEASE)
                .execution_options(synchronize_session=False)
            ).rowcount
            if taken == 1:
                claimed.append(email_id)
    return claimed


def drain(settings: Settings, database: Database, *, limit: int = 100) -> DrainReport:
    """Send what is due now (at most `limit`); one SMTP connection for the batch."""
    from clawdet.ops import metrics as ops_metrics

    report = DrainReport()
    ids = claim_due(database, limit)
    if not ids:
        return report
    try:
        client = SmtpTransport(settings).open()
    except (MailNotConfigured, OSError, smtplib.SMTPException) as exc:
        log.warning("mail: cannot reach the SMTP server: %s", exc)
        for email_id in ids:
            _attempt_failed(settings, database, email_id, f"SMTP connection: {exc}", report)
        return report
    try:
        for email_id in ids:
            with database.sessions() as session:
                row = session.get(OutboxEmail, email_id)
                message = build_message(row, settings.smtp_from)
                kind = row.kind
            try:
                client.send_message(message)
            except (OSError, smtplib.SMTPException) as exc:
                _attempt_failed(settings, database, email_id, str(exc), report)
                if isinstance(exc, (OSError, smtplib.SMTPServerDisconnected)):
                    for rest in ids[ids.index(email_id) + 1 :]:
                        _attempt_failed(settings, database, rest, "SMTP connection lost", report)
                    break
                continue
            with database.session() as session:
                row = session.get(OutboxEmail, email_id)
                row.status, row.sent_at, row.attempts = OutboxStatus.SENT.value, utcnow(), row.attempts + 1
                row.next_attempt_at, row.last_error = None, None
                ops_metrics.increment(session, "clawdet_emails_sent_total", {"kind": kind})
            report.sent += 1
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
    if report.sent or report.failed:
        log.info("mail: %s", report.line())
    return report


def _attempt_failed(
    settings: Settings, database: Database, email_id: int, error: str, report: DrainReport
) -> None:
    from clawdet.ops import metrics as ops_metrics

    with database.session() as session:
        row = session.get(OutboxEmail, email_id)
        row.attempts += 1
        row.last_error = error[:500]
        if row.attempts >= settings.mail_max_attempts:
            row.status, row.next_attempt_at = OutboxStatus.FAILED.value, None
            ops_metrics.increment(session, "clawdet_emails_failed_total", {"kind": row.kind})
            report.failed += 1
            log.error(
                "mail: giving up on email %s (%s) after %d attempts: %s",
                row.id,
                row.kind,
                row.attempts,
                row.last_error,
            )
        else:
            row.next_attempt_at = utcnow() + backoff(row.attempts)
            report.retried += 1


class MailSender:
    """The worker's mail loop: queue what the database says is due (welcome, quota warnings),
    then send what is due, every `interval` seconds until `stop` is set."""

    def __init__(self, settings: Settings, database: Database, *, interval: float = 5.0):
        self.settings = settings
        self.database = database
        self.interval = interval
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def run_once(self) -> DrainReport:
        from clawdet.mail import triggers as mail_triggers

        mail_triggers.queue_due(self.settings, self.database)
        if not self.settings.smtp_host:
            return DrainReport()
        return drain(self.settings, self.database)

    def _loop(self) -> None:
        if not self.settings.smtp_host:
            log.warning("mail: SMTP_HOST is not set; emails stay queued until it is")
        while not self.stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("mail loop error")
            self.stop.wait(self.interval)

    def start(self) -> MailSender:
        self.thread = threading.Thread(target=self._loop, name="mail-sender", daemon=True)
        self.thread.start()
        return self

    def shutdown(self, timeout: float | None = None) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout)
