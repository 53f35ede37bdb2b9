"""The `clawdet` command: one entry point for the web app, the workers and operators. One module
per command group; this one holds the group and what they share."""

from __future__ import annotations

from contextlib import contextmanager

import click

from clawdet.settings import Settings


@click.group(help="Clawdet control plane.")
def main() -> None:
    pass


def _settings(**overrides: str) -> Settings:
    with user_errors():
        settings = Settings.from_env(**overrides)
    refusals = settings.sandbox_refusals()
    if refusals:
        raise click.ClickException(
            "Sandbox mode (CLAWDET_SANDBOX=true) runs fake servers and fake services, so it is "
            f"refused here: {'; '.join(refusals)}. For real customers set CLAWDET_SANDBOX=false "
            "and every cloud variable; for the sandbox unset these (make run needs none of them)."
        )
    return settings


def _database():
    from db.engine import Database

    return Database(_settings().database_url)


def _logging() -> None:
    """JSON lines with secrets masked at the logger (LOG_FORMAT=console for a terminal)."""
    from clawdet.logs import configure

    configure(_settings())


def _redacted(url: str) -> str:
    """A database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _stop_on_signals(on_stop) -> None:
    """First SIGTERM/SIGINT: finish what runs and exit; a second one: abort waits too."""
    import signal

    calls = {"n": 0}

    def handler(signum, _frame):
        calls["n"] += 1
        click.echo(f"Stopping ({signal.Signals(signum).name}); running operations finish first.", err=True)
        on_stop(abort=calls["n"] > 1)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _target():
    from clawdet import cloud

    with user_errors():
        return cloud.resolve(_settings())


@contextmanager
def user_errors():
    """A UserFacingError becomes a one-line CLI error: what happened and what to do."""
    from clawdet.errors import UserFacingError

    try:
        yield
    except UserFacingError as exc:
        raise click.ClickException(f"{exc.message} {exc.action}") from exc


# The command groups register themselves on `main`.
from clawdet.cli import (  # noqa: E402, F401
    accounts,
    backups,
    database,
    fleet,
    golden,
    instances,
    mail,
    pool,
    rollouts,
    serve,
)
