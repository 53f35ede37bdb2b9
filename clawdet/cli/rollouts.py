"""`clawdet rollout ...`: a new OpenClaw version for the fleet, planned, approved and executed
in waves behind a health gate (see clawdet/rollouts). The exit codes are for GitOps runs:
0 done (stored, started, completed), 3 refused (the plan or the approval), 4 halted, 5 aborted,
6 not finished yet."""

from __future__ import annotations

import sys
import time

import click

from clawdet.cli import _database, _logging, _settings, main, user_errors
from clawdet.cli.instances import OPERATOR

EXIT_REFUSED, EXIT_HALTED, EXIT_ABORTED, EXIT_UNFINISHED = 3, 4, 5, 6


@main.group(help="Roll a new OpenClaw version out to the fleet: plan, start, status, pause, resume, abort.")
def rollout() -> None:
    pass


def _numbers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: give whole percentages, e.g. 1,10,25,50,100") from exc


@rollout.command(help="Preview every affected stack and store the plan; prints its id for `start`.")
@click.option(
    "--version", "version", required=True, help="An OpenClaw version (2026.9.7) or image reference."
)
@click.option(
    "--cohort", default="unpinned", show_default=True, help="unpinned, all, tier:<name>, list:<a,b>."
)
@click.option(
    "--canary", default=1, show_default=True, type=click.IntRange(0), help="Instances updated first."
)
@click.option(
    "--canary-names", default="", help="Preferred canaries (internal or opted-in), comma-separated."
)
@click.option("--waves", default="1,10,25,50,100", show_default=True, help="Cumulative % of the cohort.")
@click.option("--soak", default=300, show_default=True, type=click.IntRange(0), help="Seconds between waves.")
@click.option(
    "--budget", default=5.0, show_default=True, help="% of failed updates after the canary that halts."
)
@click.option(
    "--gate-seconds", default=180, show_default=True, type=click.IntRange(10), help="Gate deadline."
)
@click.option("--allow-replace", is_flag=True, help="Accept a plan that replaces servers (data risk).")
@click.option(
    "--parallel", default=4, show_default=True, type=click.IntRange(1, 32), help="Previews at once."
)
def plan(version, cohort, canary, canary_names, waves, soak, budget, gate_seconds, allow_replace, parallel):
    from clawdet.reconciler.reconciler import Reconciler
    from clawdet.rollouts.cohort import Cohort
    from clawdet.rollouts.plan import PlanOptions, make_plan

    _logging()
    options = PlanOptions(
        canary=canary,
        canary_names=tuple(n.strip().lower() for n in canary_names.split(",") if n.strip()),
        waves=_numbers(waves),
        soak_seconds=soak,
        failure_budget=budget,
        gate_seconds=gate_seconds,
        allow_replace=allow_replace,
        parallel=parallel,
    )
    from clawdet.errors import UserFacingError
    from clawdet.reconciler.reconciler import Refused

    try:
        result = make_plan(
            Reconciler(_settings(), _database()), version, Cohort.parse(cohort), options, OPERATOR
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    except (Refused, UserFacingError) as exc:  # the platform's own configuration is not ready
        click.echo(f"Refused: {getattr(exc, 'message', exc)} {getattr(exc, 'action', '')}".strip(), err=True)
        sys.exit(EXIT_REFUSED)
    for stack in sorted(result.stacks, key=lambda s: (s.wave < 0, s.wave, s.name)):
        wave = "canary" if stack.wave == 0 else (f"wave {stack.wave}" if stack.wave > 0 else "-")
        click.echo(f"{stack.name:<30} {stack.operation:<10} {wave:<8} {stack.detail}")
    click.echo("totals  " + "  ".join(f"{op}={n}" for op, n in sorted(result.totals.items())))
    if result.refused:
        click.echo(f"Refused: {result.refused}.", err=True)
        sys.exit(EXIT_REFUSED)
    click.echo(
        f"Plan {result.rollout_id} stored for {result.image}. "
        f"Approve it: clawdet rollout start {result.rollout_id}"
    )


@rollout.command(help="Approve a plan: refused if the fleet changed since it was made.")
@click.argument("rollout_id")
@click.option(
    "--wait", is_flag=True, help="Wait until it completes, halts or is aborted (exit code says which)."
)
def start(rollout_id: str, wait: bool) -> None:
    from clawdet.errors import UserFacingError
    from clawdet.rollouts import driver

    database = _database()
    try:
        with database.session() as session:
            driver.start(session, rollout_id, OPERATOR)
    except UserFacingError as exc:
        click.echo(f"Refused: {exc.message} {exc.action}", err=True)
        sys.exit(EXIT_REFUSED if exc.code in ("fleet_changed", "wrong_state") else 1)
    click.echo(f"Rollout {rollout_id} started; the workers update the canary first.")
    if wait:
        sys.exit(_report(database, rollout_id, wait=True, timeout=None))


@rollout.command(help="A rollout's waves and each instance's outcome (all rollouts without an id).")
@click.argument("rollout_id", required=False)
@click.option("--wait", is_flag=True, help="Wait until it is no longer running (a paused one ends the wait).")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds (exit 6).")
def status(rollout_id: str | None, wait: bool, timeout: float | None) -> None:
    database = _database()
    if rollout_id is None:
        _list(database)
        return
    sys.exit(_report(database, rollout_id, wait=wait, timeout=timeout))


def _list(database) -> None:
    from sqlalchemy import select

    from db.models import Rollout

    with database.sessions() as session:
        for row in session.scalars(select(Rollout).order_by(Rollout.created_at.desc()).limit(20)):
            click.echo(f"{row.id}  {row.status:<10} {row.image}  cohort={row.cohort}  {row.message}")


def _report(database, rollout_id: str, *, wait: bool, timeout: float | None) -> int:
    from clawdet.rollouts import MemberState, RolloutStatus, driver
    from db.models import Rollout

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with database.sessions() as session, user_errors():
            rollout = session.get(Rollout, rollout_id)
            if rollout is None:
                raise click.ClickException(
                    f"No rollout is called {rollout_id!r}. See `clawdet rollout status`."
                )
            state = rollout.status
            running = state in (RolloutStatus.RUNNING.value, RolloutStatus.PLANNED.value)
            if not (wait and running) or (deadline is not None and time.monotonic() > deadline):
                click.echo(f"{rollout.id}  {state}  {rollout.image}  cohort={rollout.cohort}")
                for wave in driver.progress(rollout):
                    counts = "  ".join(f"{k}={v}" for k, v in sorted(wave.counts.items()))
                    click.echo(f"  {wave.label:<8} {wave.size:>4} instance(s)  {counts}")
                for member in rollout.members:
                    if member.state in (MemberState.ROLLED_BACK.value, MemberState.UPDATING.value):
                        click.echo(f"  {member.stack_name:<30} {member.state:<12} {member.message}")
                if rollout.message:
                    click.echo(f"  {rollout.message}")
                return {
                    RolloutStatus.COMPLETED.value: 0,
                    RolloutStatus.HALTED.value: EXIT_HALTED,
                    RolloutStatus.ABORTED.value: EXIT_ABORTED,
                }.get(state, EXIT_UNFINISHED)
        time.sleep(2)


def _transition(name: str, help_text: str) -> click.Command:
    @click.argument("rollout_id")
    def run(rollout_id: str) -> None:
        from clawdet.rollouts import driver

        with _database().session() as session, user_errors():
            rollout = getattr(driver, name)(session, rollout_id, OPERATOR)
            click.echo(f"Rollout {rollout.id} is {rollout.status}.")

    return click.command(name, help=help_text)(run)


for _name, _help in (
    ("pause", "Start no new updates; the ones under way finish behind their gate."),
    ("resume", "Go on with a paused rollout."),
    ("abort", "Stop for good: nothing more moves forward; what passed stays, what failed was rolled back."),
):
    rollout.add_command(_transition(_name, _help))
