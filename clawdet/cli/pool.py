"""`clawdet pool keep` and `clawdet pool show`: the warm pool (WARM_POOL), booted servers new
instances adopt. The workers keep it on their own; `keep` is one pass now (cron, CI, a test)."""

from __future__ import annotations

import click

from clawdet.cli import _database, _logging, _settings, main, user_errors


@main.group(help="The warm pool: booted servers waiting for new instances (WARM_POOL).")
def pool() -> None:
    pass


@pool.command(help="Make members up to WARM_POOL and retire outdated ones, now.")
def keep() -> None:
    from clawdet.ops.warm_pool import wanted
    from clawdet.reconciler import pool as warm_pool
    from clawdet.reconciler.reconciler import Reconciler

    _logging()
    with user_errors():
        settings = _settings()
        wanted(settings)
        report = warm_pool.keep(Reconciler(settings, _database()))
    click.echo(report.line())
    if report.failed:
        raise click.ClickException(f"{len(report.failed)} member(s) could not be made; see the log above")


@pool.command(help="The members, their state and what they cost a month.")
def show() -> None:
    from clawdet.ops.warm_pool import listing

    settings = _settings()
    with _database().sessions() as session:
        waiting, wanted, monthly = listing(session, settings.warm_pool)
        for w in waiting:
            m = w.member
            click.echo(
                f"pool-{m.id}  {m.tier:<10} {m.region:<5} {m.status:<9} server {m.server_id or '-':<8} "
                f"image {m.server_image}  EUR {w.monthly_eur}/month"
            )
    asked = ", ".join(f"{tier}:{region}={count}" for (tier, region), count in wanted.items()) or "none"
    click.echo(f"wanted: {asked}; waiting servers cost EUR {monthly} a month")
