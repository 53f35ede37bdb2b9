"""`clawdet backups ...`: an instance's backups for operators (list, make one now, check a stored
one, export it decrypted, apply retention, run the nightly pass)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clawdet.cli import _database, _logging, _settings, main, user_errors


@main.group(help="Customer backups: list, create, verify, export, prune, nightly.")
def backups() -> None:
    pass


def _instance_id(database, name: str) -> str:
    """An instance id, or the newest instance with this subdomain (destroyed ones too: their
    final backup outlives them)."""
    from sqlalchemy import or_, select

    from db.models import Instance

    with database.sessions() as session:
        found = session.scalars(
            select(Instance.id)
            .where(or_(Instance.id == name, Instance.subdomain == name.lower()))
            .order_by(Instance.created_at.desc())
        ).first()
    if found is None:
        raise click.ClickException(f"No instance is called {name!r}.")
    return found


def _line(row) -> str:
    size = f"{row.size / 1e6:.1f} MB" if row.size else "-"
    verified = {True: "verified", False: "NOT verified", None: "unchecked"}[row.verified]
    when = row.started_at.strftime("%Y-%m-%d %H:%M UTC")
    detail = row.message or row.verify_message
    return f"{row.id}  {when}  {row.kind:<11} {row.status:<9} {size:>9}  {verified}  {detail}".rstrip()


@backups.command("list", help="An instance's backups, newest first (by subdomain or id).")
@click.argument("instance")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per backup.")
def list_(instance: str, as_json: bool) -> None:
    from clawdet.backups import service

    database = _database()
    for row in service.listed(database, _instance_id(database, instance)):
        if as_json:
            fields = ("id", "kind", "status", "size", "archive_size", "key_version", "verified")
            fields += ("verify_message", "message", "started_at", "finished_at", "expires_at")
            click.echo(json.dumps({name: getattr(row, name) for name in fields}, default=str))
        else:
            click.echo(_line(row))


@backups.command(help="Back an instance up now (OpenClaw's archive, verified, encrypted, stored).")
@click.argument("instance")
def create(instance: str) -> None:
    from clawdet.backups import service

    _logging()
    database = _database()
    with user_errors():
        row = service.create(_settings(), database, _instance_id(database, instance), service.Kind.MANUAL)
    click.echo(_line(row))
    if row.status != "succeeded":
        raise SystemExit(1)


@backups.command(help="Check a stored backup: it decrypts with its key to an OpenClaw archive.")
@click.argument("backup_id")
def verify(backup_id: str) -> None:
    from clawdet.backups import service

    with user_errors():
        row = service.verify(_settings(), _database(), backup_id)
    click.echo(_line(row))
    if not row.verified:
        raise SystemExit(1)


@backups.command(help="Write a backup's OpenClaw archive, decrypted, to a file.")
@click.argument("backup_id")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
def export(backup_id: str, target: Path) -> None:
    from clawdet.backups import service

    if target.exists():
        raise click.ClickException(f"{target} exists; choose a new file.")
    with user_errors():
        service.download(_settings(), _database(), backup_id, target)
    target.chmod(0o600)
    click.echo(f"{target}  (openclaw backup verify {target} checks it; it holds the customer's secrets)")


@backups.command(help="Restore a backup into its instance, in place (the current state is backed up first).")
@click.argument("instance")
@click.argument("backup_id")
def restore(instance: str, backup_id: str) -> None:
    from clawdet.backups import restore as restoring

    _logging()
    database = _database()
    with user_errors():
        done = restoring.restore(_settings(), database, _instance_id(database, instance), backup_id)
    click.echo(f"restored {done.backup_id}; the state it replaced is backup {done.pre_restore_backup_id}")


@backups.command(help="A time-limited download link of a backup's decrypted archive (for its owner).")
@click.argument("backup_id")
@click.option("--minutes", default=30, show_default=True, help="How long the link works (1 to 10080).")
def link(backup_id: str, minutes: int) -> None:
    from datetime import timedelta

    from clawdet.backups import export

    with user_errors():
        made = export.export_link(_settings(), _database(), backup_id, lifetime=timedelta(minutes=minutes))
    click.echo(made.url)
    click.echo(
        f"until {made.expires_at:%Y-%m-%d %H:%M} UTC; anyone holding it can download the archive", err=True
    )


@backups.command(help="Apply retention (7 daily, 4 weekly, 3 monthly; final backups until they expire).")
@click.argument("instance", required=False)
def prune(instance: str | None) -> None:
    from clawdet.backups import nightly, service

    _logging()
    settings, database = _settings(), _database()
    with user_errors():
        ids = [_instance_id(database, instance)] if instance else nightly.instances_with_backups(database)
        deleted = [d for instance_id in ids for d in service.prune(settings, database, instance_id)]
    click.echo(f"{len(deleted)} backups deleted")


@backups.command(
    "nightly", help="Run the nightly pass now: every instance whose moment in BACKUP_WINDOW has come."
)
def nightly_() -> None:
    from clawdet.backups import nightly

    _logging()
    with user_errors():
        report = nightly.run(_settings(), _database())
    click.echo(report.line())
    if report.failed:
        raise SystemExit(1)
