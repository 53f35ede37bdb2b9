"""The `clawdet` command: one entry point for the web app, the database, imports and operators."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from db.settings import Settings


def _settings() -> Settings:
    return Settings.from_env()


@click.group(help="Clawdet control plane.")
def main() -> None:
    pass


@main.command(help="Serve the web app (waitress) on 127.0.0.1:$PORT.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="PORT", default=8000, show_default=True, type=int)
@click.option("--threads", default=16, show_default=True, type=int)
def web(host: str, port: int, threads: int) -> None:
    from waitress import serve

    from webapp import create_app

    settings = _settings()
    app = create_app(settings)
    click.echo(f"Clawdet web on http://{host}:{port} (database: {_redacted(settings.database_url)})")
    serve(app, host=host, port=port, threads=threads, ident="clawdet")


@main.group(help="Database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Apply every migration (idempotent).")
def db_upgrade() -> None:
    from db.migrate import current, upgrade

    settings = _settings()
    upgrade(settings.database_url)
    click.echo(f"Database at revision {current(settings.database_url)}: {_redacted(settings.database_url)}")


@main.command("import-users", help="Import the seed's users.json (idempotent).")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
def import_users(path: Path, dry_run: bool) -> None:
    from db.engine import Database
    from db.importer import ImportFileError, import_users as run_import, load_records

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

    from db import audit
    from db.engine import Database
    from db.errors import UserFacingError
    from db.models import Role, User
    from webapp import accounts
    from webapp.passwords import hash_password

    database = Database(_settings().database_url)
    try:
        address = accounts.clean_email(email)
        with database.session() as session:
            user = session.scalar(select(User).where(User.email == address))
            if user is None:
                password = (sys.stdin.readline().rstrip("\n") if password_stdin else
                            click.prompt("Password for the new admin", hide_input=True,
                                         confirmation_prompt=True))
                user = User(email=address, name=accounts.clean_name(name),
                            password_hash=hash_password(accounts.clean_password(password)),
                            terms_accepted_at=None)
                user.mark_free_beta()
                session.add(user)
                session.flush()
            user.role = Role.ADMIN.value
            audit.record(session, "user.make_admin", actor="cli", target_type="user", target_id=user.id)
    except UserFacingError as exc:
        raise click.ClickException(f"{exc.message} {exc.action}") from exc
    click.echo(f"{address} is an admin.")


def _redacted(url: str) -> str:
    """A database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
