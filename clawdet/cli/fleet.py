"""`clawdet worker`, `clawdet scan` and `clawdet reconcile`: the reconcilers and the fleet, for
operators, cron and CI."""

from __future__ import annotations

import sys

import click

from clawdet.cli import _database, _logging, _settings, _stop_on_signals, _target, main, user_errors


@main.command(help="Run reconcilers: claim instances whose observed state lags and converge them.")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--scan-interval", default=60.0, show_default=True, help="Seconds between fleet scans (0: off)."
)
@click.option(
    "--lease-seconds",
    default=300,
    show_default=True,
    type=click.IntRange(5),
    help="How long a claim lasts without renewal (a dead worker's work waits this long).",
)
@click.option(
    "--ready-deadline",
    default=600,
    show_default=True,
    type=click.IntRange(1),
    help="Seconds a new gateway has to answer /healthz.",
)
@click.option(
    "--rollout-interval", default=2.0, show_default=True, help="Seconds between rollout steps (0: off)."
)
def worker(
    concurrency: int, scan_interval: float, lease_seconds: int, ready_deadline: int, rollout_interval: float
) -> None:
    from datetime import timedelta

    from clawdet.reconciler.reconciler import ReconcilerConfig
    from clawdet.reconciler.worker import Worker

    _logging()
    config = ReconcilerConfig(lease=timedelta(seconds=lease_seconds), ready_deadline=ready_deadline)
    with user_errors():  # a configuration the workers refuse (say, an image without digest)
        runner = Worker(
            _settings(),
            _database(),
            concurrency=concurrency,
            scan_interval=scan_interval,
            rollout_interval=rollout_interval,
            config=config,
        )
    _stop_on_signals(lambda abort: runner.shutdown(0, abort=abort))
    runner.start()
    click.echo(f"Worker with {concurrency} reconciler(s) on {runner.target.hcloud_endpoint}")
    runner.wait()
    click.echo("Worker stopped; no lease or lock left behind.")


@main.command(help="Print the fleet's drift and health; mark drifted instances for repair.")
@click.option("--stack", "only", help="Only this stack.")
@click.option("--no-mark", is_flag=True, help="Only report; mark nothing for repair.")
def scan(only: str | None, no_mark: bool) -> None:
    from clawdet.mail.notifier import EmailNotifier
    from clawdet.reconciler import fleet

    _logging()
    report = fleet.scan(
        _database(), _target(), only=only, mark=not no_mark, notifier=EmailNotifier(_settings())
    )
    _print_scan(report)
    if report.drifted:
        sys.exit(1)


@main.command(help="One convergence pass for cron or CI; exits non-zero while drift is unresolved.")
@click.option("--stack", "only", help="Only this stack.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
def reconcile(only: str | None, dry_run: bool) -> None:
    from clawdet.instances import leases
    from clawdet.reconciler import fleet
    from clawdet.reconciler.reconciler import Reconciler
    from clawdet.rollouts import driver as rollouts

    _logging()
    database = _database()
    target = _target()
    with user_errors():
        reconciler = Reconciler(_settings(), database)
    report = fleet.scan(database, target, only=only, mark=not dry_run, notifier=reconciler.notifier)
    _print_scan(report)
    with database.sessions() as session:
        queued = leases.queued(session, only)
    for stack, action in queued:
        click.echo(f"plan  {stack:<30} {action}")
    if dry_run:
        sys.exit(1 if (report.drifted or queued) else 0)
    if only is None:  # without long-running workers, each run moves the rollouts one step
        started = rollouts.advance(database, on_halt=reconciler.notifier.rollout_halted)
        if started:
            click.echo(f"rollouts  started={started} updates")
    ran = reconciler.drain(only)
    after = fleet.scan(database, target, only=only, mark=False)
    with database.sessions() as session:
        unresolved = leases.unresolved(session, only)
        for instance in unresolved:
            click.echo(f"unresolved  {instance.stack_name:<30} {instance.status}: {instance.status_message}")
    for finding in after.drifted:
        click.echo(f"unresolved  {finding.stack_name:<30} {'; '.join(finding.problems)}")
    click.echo(
        f"summary  operations={ran} drifted_before={len(report.drifted)} "
        f"unresolved={len(after.drifted) + len(unresolved)}"
    )
    sys.exit(1 if (after.drifted or unresolved) else 0)


def _print_scan(report) -> None:
    for finding in report.findings:
        state = "drift " if finding.action else "ok    "
        detail = "; ".join(finding.problems) if finding.problems else "healthy"
        click.echo(
            f"{state}{finding.stack_name:<30} {detail}" + (f"  -> {finding.action}" if finding.action else "")
        )
    for orphan in report.orphans:
        click.echo(f"orphan {orphan:<30} a managed server no instance claims")
    click.echo(
        f"scan  instances={len(report.findings)} drifted={len(report.drifted)} "
        f"api_calls={report.api_calls} seconds={report.seconds:.2f}"
    )
