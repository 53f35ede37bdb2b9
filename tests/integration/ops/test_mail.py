"""The email outbox: queued in the deciding transaction, delivered to a real SMTP server (the
sandbox sink), retried with backoff, given up after the last attempt, never duplicated."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from clawdet.instances.lifecycle import InstanceStatus
from clawdet.instances.requests import request_instance
from clawdet.llm import usage as llm_usage
from clawdet.mail import outbox as mail
from clawdet.mail import triggers as mail_triggers
from clawdet.mail.notifier import EmailNotifier
from db.models import Instance, OutboxEmail, User, utcnow
from tests.fixtures.database import JsonClient, register
from tests.fixtures.ops import make_admin, with_sink


def _outbox(database) -> list[OutboxEmail]:
    with database.sessions() as session:
        return list(session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))


def test_a_new_address_gets_only_its_confirmation_link_then_the_welcome(
    client, database, settings, mail_sink
):
    register(client, email="wendy@example.com", name="Wendy")
    settings = with_sink(settings, mail_sink)
    assert mail_triggers.queue_due(settings, database) == 1
    assert mail_triggers.queue_due(settings, database) == 0  # the dedupe key holds
    report = mail.drain(settings, database)
    assert report.sent == 1 and report.failed == 0
    [received] = mail_sink.messages()
    assert received["to"] == "wendy@example.com" and received["kind"] == "verify_email"
    [link] = [word for word in received["text"].split() if "/verify-email/" in word]
    assert f'href="{link}"' in received["html"]
    [row] = _outbox(database)
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None

    page = client.client.get(link.removeprefix(settings.public_url))
    assert page.status_code == 200 and "Confirm my email address" in page.get_data(as_text=True)
    done = client.post(link.removeprefix(settings.public_url))
    assert done.status_code == 200 and "Your email is confirmed" in done.get_data(as_text=True)
    assert client.get("/api/auth/me").get_json()["user"]["emailVerified"] is True
    assert mail_triggers.queue_due(settings, database) == 1
    assert mail_triggers.queue_due(settings, database) == 0
    assert mail.drain(settings, database).sent == 1
    welcome = mail_sink.messages()[-1]
    assert welcome["kind"] == "welcome" and welcome["to"] == "wendy@example.com"
    assert (
        "Create my instance" in welcome["text"] and "<strong>Create my instance</strong>" in welcome["html"]
    )
    assert mail.drain(settings, database).sent == 0
    assert len(mail_sink.messages()) == 2


def test_unreachable_smtp_retries_with_backoff_then_gives_up(client, database, settings, mail_sink):
    register(client, email="retry@example.com")
    port = mail_sink.port
    mail_sink.stop()
    settings = with_sink(settings, mail_sink, smtp_timeout=2.0, mail_max_attempts=3)
    mail_triggers.queue_due(settings, database)
    first = mail.drain(settings, database)
    assert first.retried == 1 and first.sent == 0
    [row] = _outbox(database)
    assert row.status == "pending" and row.attempts == 1 and "SMTP connection" in row.last_error
    assert row.next_attempt_at > utcnow() + timedelta(seconds=20)  # backoff: not due again yet
    assert mail.drain(settings, database).retried == 0

    def make_due():
        with database.session() as session:
            session.get(OutboxEmail, row.id).next_attempt_at = utcnow() - timedelta(seconds=1)

    make_due()
    assert mail.drain(settings, database).retried == 1
    [row] = _outbox(database)
    assert row.attempts == 2 and row.next_attempt_at - utcnow() > timedelta(seconds=50)  # doubled
    make_due()
    assert mail.drain(settings, database).failed == 1
    [row] = _outbox(database)
    assert row.status == "failed" and row.attempts == 3 and row.next_attempt_at is None

    # The server comes back: a failed email stays failed (an operator re-queues it), new ones go.
    with type(mail_sink)(mail_sink.folder, port=port) as sink:
        register(client, email="later@example.com")
        mail_triggers.queue_due(settings, database)
        assert mail.drain(settings, database).sent == 1
        assert [m["to"] for m in sink.messages()] == ["later@example.com"]


def _ready_instance(database, settings, name="flappy") -> str:
    with database.session() as session:
        user = User(
            email=f"{name}@example.com", email_verified=True, name=name.title(), terms_accepted_at=utcnow()
        )
        user.mark_free_beta()
        session.add(user)
        session.flush()
        instance = request_instance(session, user, subdomain=name)
        instance.status, instance.health = InstanceStatus.READY.value, "healthy"
        instance.url = f"https://{name}.clawdet.test"
        return instance.id


def test_a_flapping_instance_sends_one_down_alert_not_ten(database, settings, mail_sink):
    settings = with_sink(settings, mail_sink, alert_debounce_minutes=30)
    notifier = EmailNotifier(settings)
    instance_id = _ready_instance(database, settings)
    for _ in range(10):
        for healthy in (False, True):
            with database.session() as session:
                notifier.health_changed(session, session.get(Instance, instance_id), healthy)
    mail.drain(settings, database)
    kinds = [m["kind"] for m in mail_sink.messages()]
    assert kinds == ["health_down", "health_up"]
    assert "flappy" in mail_sink.messages()[0]["subject"] and "repairing" in mail_sink.messages()[0]["text"]

    # After the debounce window a new outage is news again.
    with database.session() as session:
        for row in session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "health_down")):
            row.created_at = utcnow() - timedelta(minutes=31)
    with database.session() as session:
        notifier.health_changed(session, session.get(Instance, instance_id), False)
        notifier.health_changed(session, session.get(Instance, instance_id), False)
    mail.drain(settings, database)
    assert [m["kind"] for m in mail_sink.messages()] == ["health_down", "health_up", "health_down"]


def test_recovery_without_a_down_alert_sends_nothing(database, settings, mail_sink):
    notifier = EmailNotifier(with_sink(settings, mail_sink))
    instance_id = _ready_instance(database, settings, "steady")
    with database.session() as session:
        notifier.health_changed(session, session.get(Instance, instance_id), True)
    assert _outbox(database) == []


def test_quota_warnings_at_80_and_100_percent_once_each(database, settings, mail_sink):
    settings = with_sink(settings, mail_sink)
    instance_id = _ready_instance(database, settings, "chatty")
    with database.sessions() as session:
        user_id = session.get(Instance, instance_id).user_id

    def use(tokens):
        with database.session() as session:
            llm_usage.record(
                session,
                user_id=user_id,
                instance_id=instance_id,
                model="grok-4",
                prompt_tokens=tokens,
                completion_tokens=0,
            )

    use(50_000)  # free beta quota: 100 000 tokens
    mail_triggers.queue_due(settings, database)
    assert [r.kind for r in _outbox(database)] == []
    use(31_000)
    mail_triggers.queue_due(settings, database)
    use(1_000)
    mail_triggers.queue_due(settings, database)
    use(19_000)
    mail_triggers.queue_due(settings, database)
    mail_triggers.queue_due(settings, database)
    mail.drain(settings, database)
    subjects = [m["subject"] for m in mail_sink.messages()]
    assert subjects == [
        "You have used 80% of your monthly AI tokens",
        "You have used 100% of your monthly AI tokens",
    ]
    assert "refused until the month ends" in mail_sink.messages()[1]["text"]


def _sandbox_client(settings, database):
    import dataclasses

    from webapp import create_app

    return JsonClient(create_app(dataclasses.replace(settings, sandbox=True), database).test_client())


def test_sandbox_mail_page_lists_what_the_sink_received_to_admins_only(settings, database):
    from sandbox.mail_sink import MailSink

    client = _sandbox_client(settings, database)
    with MailSink(settings.data_dir / "sandbox" / "mail") as sink:
        register(client, email="sandy@example.com")
        mail_triggers.queue_due(settings, database)
        mail.drain(with_sink(settings, sink), database)
    assert client.get("/_sandbox/mail?to=sandy").status_code == 404  # her own mail is not enough
    client.post("/api/auth/logout")
    admin = _sandbox_client(settings, database)
    make_admin(database, admin)
    listed = admin.get("/_sandbox/mail?to=sandy").get_json()["messages"]
    assert [m["subject"] for m in listed] == ["Confirm your email address for Clawdet"]
    assert admin.get("/_sandbox/mail?to=nobody").get_json()["messages"] == []


def test_no_sandbox_mail_page_outside_sandbox_mode(settings, database):
    from webapp import create_app

    admin = JsonClient(create_app(settings, database).test_client())
    make_admin(database, admin)
    assert admin.get("/_sandbox/mail").status_code == 404


def test_send_mail_command_drains_the_outbox(client, database, settings, mail_sink, monkeypatch):
    from click.testing import CliRunner

    from clawdet.cli import main

    register(client, email="cli-mail@example.com")
    for key, value in {
        "DATABASE_URL": database.url,
        "CLAWDET_DATA_DIR": str(settings.data_dir),
        "SMTP_HOST": "",
        "SMTP_PORT": str(mail_sink.port),
        "SMTP_STARTTLS": "false",
    }.items():
        monkeypatch.setenv(key, value)
    unconfigured = CliRunner().invoke(main, ["send-mail"])
    assert unconfigured.exit_code == 1 and "SMTP_HOST is not set; 1 email(s) queued" in unconfigured.output
    monkeypatch.setenv("SMTP_HOST", mail_sink.host)
    done = CliRunner().invoke(main, ["send-mail"])
    assert done.exit_code == 0, done.output
    assert "queued=0 mail  sent=1" in done.output
    assert [m["to"] for m in mail_sink.messages()] == ["cli-mail@example.com"]


def test_the_worker_mail_loop_queues_and_sends_until_stopped(client, database, settings, mail_sink):
    import time

    sender = mail.MailSender(with_sink(settings, mail_sink), database, interval=0.1).start()
    try:
        register(client, email="loop@example.com")
        deadline = time.monotonic() + 10
        while not mail_sink.messages() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sender.shutdown(5)
    assert not sender.thread.is_alive()
    assert [m["kind"] for m in mail_sink.messages()] == ["verify_email"]


def test_an_unverified_address_gets_no_news_of_an_instance(database, settings, mail_sink):
    settings = with_sink(settings, mail_sink)
    instance_id = _ready_instance(database, settings, "unsure")
    with database.session() as session:
        session.get(Instance, instance_id).user.email_verified = False
    with database.session() as session:
        EmailNotifier(settings).instance_ready(session, session.get(Instance, instance_id))
    assert _outbox(database) == []
