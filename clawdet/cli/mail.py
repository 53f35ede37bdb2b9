"""`clawdet send-mail`."""

from __future__ import annotations

import sys

import click

from clawdet.cli import _database, _settings, main


@main.command("send-mail", help="Queue due emails (welcome, quota warnings) and send every due email once.")
def send_mail() -> None:
    from clawdet.mail import outbox as mail
    from clawdet.mail import triggers as mail_triggers

    settings = _settings()
    database = _database()
    queued = mail_triggers.queue_due(settings, database)
    if not settings.smtp_host:
        raise click.ClickException(
            f"SMTP_HOST is not set; {queued} email(s) queued, none sent. "
            "Set the SMTP_* variables (.env.example), then run again."
        )
    total = mail.DrainReport()
    while True:
        report = mail.drain(settings, database)
        total.sent, total.retried, total.failed = (
            total.sent + report.sent,
            total.retried + report.retried,
            total.failed + report.failed,
        )
        if not (report.sent or report.failed):
            break
    click.echo(f"queued={queued} " + total.line())
    if total.retried or total.failed:
        sys.exit(1)
