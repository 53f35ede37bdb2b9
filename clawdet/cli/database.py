"""`clawdet db upgrade`, `clawdet backup` and `clawdet restore`: the platform's own data."""

from __future__ import annotations

from pathlib import Path

import click

from clawdet.cli import (
    _database,
    _redacted,
    _settings,
    main,
    user_errors,
)


@main.group(help="Database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Apply every migration (idempotent).")
def db_upgrade() -> None:
    from db.migrate import current, upgrade

    settings = _settings()
    upgrade(settings.database_url)
    click.echo(f"Database at revision {current(settings.database_url)}: {_redacted(settings.database_url)}")


@main.command(help="Back up the database and every instance's Pulumi stack into an empty DIR.")
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
def backup(folder: Path) -> None:
    from clawdet.ops import backup as platform_backup

    with user_errors():
        report = platform_backup.backup(_settings(), _database(), folder)
    click.echo(report.line())


@main.command(
    help="Restore a `clawdet backup` DIR into an empty database and re-import its stacks. "
    "Run it again after a failure to finish the job."
)
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option(
    "--overwrite-newer-stacks",
    is_flag=True,
    help="Also roll back stacks whose state is newer than the backup's copy (refused without it).",
)
def restore(folder: Path, overwrite_newer_stacks: bool) -> None:
    from clawdet.ops import backup as platform_backup

    with user_errors():
        report = platform_backup.restore(
            _settings(), _database(), folder, overwrite_newer=overwrite_newer_stacks
        )
    click.echo(report.line().replace("backup ", "restored ", 1))
