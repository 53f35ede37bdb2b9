"""`clawdet create-admin` and `clawdet import-users`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from clawdet.cli import (
    _settings,
    main,
    user_errors,
)


@main.command("import-users", help="Import the seed's users.json (idempotent).")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
def import_users(path: Path, dry_run: bool) -> None:
    from clawdet.accounts.importer import ImportFileError, load_records
    from clawdet.accounts.importer import import_users as run_import
    from db.engine import Database

    try:
        records = load_records(path)
    except ImportFileError as exc:
        raise click.ClickException(f"{exc}. Nothing was imported.") from exc
    database = Database(_settings().database_url)
    with database.sessions() as session:
        report = run_import(session, records, dry_run=dry_run)
        session.rollback() if dry_run else session.commit()
    for line in report.lines():
        click.echo(line)
    if report.rejected:
        sys.exit(1)


@main.command("create-admin", help="Make EMAIL an admin, creating the account if needed.")
@click.argument("email")
@click.option("--name", default="Admin", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_admin(email: str, name: str, password_stdin: bool) -> None:
    from sqlalchemy import select

    from clawdet.accounts import service as accounts
    from clawdet.accounts.passwords import hash_password
    from clawdet.errors import UserFacingError
    from db import audit
    from db.engine import Database
    from db.models import Role, User, utcnow

    database = Database(_settings().database_url)
    with user_errors():
        address = accounts.clean_email(email)
        with database.session() as session:
            user = session.scalar(select(User).where(User.email == address))
            if user is None:
                password = (
                    sys.stdin.readline().rstrip("\n")
                    if password_stdin
                    else click.prompt("Password for the new admin", hide_input=True, confirmation_prompt=True)
                )
                user = User(
                    email=address,
                    email_verified=True,  # the operator's own address, typed by the operator
                    email_set_at=utcnow(),
                    name=accounts.clean_name(name),
                    password_hash=hash_password(accounts.clean_password(password)),
                    terms_accepted_at=None,
                )
                user.mark_free_beta()
                session.add(user)
                session.flush()
            elif not user.email_verified:
                raise UserFacingError(
                    "email_not_verified",
                    f"The account holding {address} has not confirmed that address.",
                    "Have its owner confirm it (the link on their dashboard), then run this again.",
                )
            user.role = Role.ADMIN.value
            audit.record(session, "user.make_admin", actor="cli", target_type="user", target_id=user.id)
    click.echo(f"{address} is an admin.")
