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

    _logging()
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


def _database():
    from db.engine import Database

    return Database(_settings().database_url)


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


@main.command(help="Run reconcilers: claim instances whose observed state lags and converge them.")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--scan-interval", default=60.0, show_default=True, help="Seconds between fleet scans (0: off).")
@click.option("--lease-seconds", default=300, show_default=True, type=click.IntRange(5),
              help="How long a claim lasts without renewal (a dead worker's work waits this long).")
@click.option("--ready-deadline", default=600, show_default=True, type=click.IntRange(1),
              help="Seconds a new gateway has to answer /healthz.")
def worker(concurrency: int, scan_interval: float, lease_seconds: int, ready_deadline: int) -> None:
    from datetime import timedelta

    from provisioner.reconciler import ReconcilerConfig
    from provisioner.worker import Worker

    _logging()
    config = ReconcilerConfig(lease=timedelta(seconds=lease_seconds), ready_deadline=ready_deadline)
    runner = Worker(_settings(), _database(), concurrency=concurrency, scan_interval=scan_interval,
                    config=config)
    _stop_on_signals(lambda abort: runner.shutdown(0, abort=abort))
    runner.start()
    click.echo(f"Worker with {concurrency} reconciler(s) on {runner.target.hcloud_endpoint}")
    runner.wait()
    click.echo("Worker stopped; no lease or lock left behind.")


@main.command(help="Print the fleet's drift and health; mark drifted instances for repair.")
@click.option("--stack", "only", help="Only this stack.")
@click.option("--no-mark", is_flag=True, help="Only report; mark nothing for repair.")
def scan(only: str | None, no_mark: bool) -> None:
    from provisioner import fleet

    from provisioner.email_notifier import EmailNotifier

    _logging()
    report = fleet.scan(_database(), _target(), only=only, mark=not no_mark,
                        notifier=EmailNotifier(_settings()))
    _print_scan(report)
    if report.drifted:
        sys.exit(1)


@main.command(help="One convergence pass for cron or CI; exits non-zero while drift is unresolved.")
@click.option("--stack", "only", help="Only this stack.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
def reconcile(only: str | None, dry_run: bool) -> None:
    from sqlalchemy import select

    from db.models import Instance
    from provisioner import fleet, leases
    from provisioner.reconciler import Reconciler

    _logging()
    database = _database()
    target = _target()
    reconciler = Reconciler(_settings(), database)
    report = fleet.scan(database, target, only=only, mark=not dry_run, notifier=reconciler.notifier)
    _print_scan(report)
    with database.sessions() as session:
        query = select(Instance).where(leases.needs_work())
        if only:
            query = query.where(Instance.stack_name == only)
        queued = session.scalars(query.order_by(Instance.stack_name)).all()
        for instance in queued:
            action = instance.requested_action or (
                "destroy" if instance.desired_state == "destroyed" else "up")
            click.echo(f"plan  {instance.stack_name:<30} {action}")
    if dry_run:
        sys.exit(1 if (report.drifted or queued) else 0)
    ran = reconciler.drain(only)
    after = fleet.scan(database, target, only=only, mark=False)
    with database.sessions() as session:
        query = select(Instance).where(leases.needs_work() | (Instance.status == "failed"))
        if only:
            query = query.where(Instance.stack_name == only)
        unresolved = session.scalars(query).all()
        for instance in unresolved:
            click.echo(f"unresolved  {instance.stack_name:<30} {instance.status}: {instance.status_message}")
    for finding in after.drifted:
        click.echo(f"unresolved  {finding.stack_name:<30} {'; '.join(finding.problems)}")
    click.echo(f"summary  operations={ran} drifted_before={len(report.drifted)} "
               f"unresolved={len(after.drifted) + len(unresolved)}")
    sys.exit(1 if (after.drifted or unresolved) else 0)


def _sandbox_args(settings: Settings) -> list[str]:
    return ["--state", str(settings.data_dir / "sandbox" / "state.json"), "--zone", settings.base_domain]


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
              help="Run the sandbox cloud (Hetzner, Cloudflare, X, LLM stand-ins); --help for its options.")
@click.pass_context
def sandbox(ctx: click.Context) -> None:
    from sandbox.cli import main as sandbox_main

    sys.exit(sandbox_main(_sandbox_args(_settings()) + ctx.args))


@main.command(help="The whole control plane in one process: the sandbox cloud (unless cloud "
                   "credentials are set), one worker and the web app.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="PORT", default=8000, show_default=True, type=int)
def run(host: str, port: int) -> None:
    import os
    import threading

    from waitress import create_server

    from db.migrate import upgrade
    from provisioner.cloud import sandbox_description_path
    from provisioner.worker import Worker
    from webapp import create_app

    _logging()
    settings = _settings()
    upgrade(settings.database_url)
    cloud_sandbox = mail_sink = None
    if not settings.smtp_host:
        from sandbox.mail_sink import MailSink

        mail_sink = MailSink(settings.data_dir / "sandbox" / "mail").start()
        for key, value in mail_sink.env().items():
            os.environ.setdefault(key, value)
        settings = _settings()
    if not settings.cloud_env.get("HCLOUD_TOKEN"):
        from sandbox import Sandbox

        cloud_sandbox = Sandbox(settings.data_dir / "sandbox" / "state.json", zone_name=settings.base_domain)
        cloud_sandbox.start()
        cloud_sandbox.write_env_file(sandbox_description_path(settings))
        for key, value in sandbox_web_env(cloud_sandbox.describe()).items():
            os.environ.setdefault(key, value)
        settings = _settings()
        click.echo(f"Sandbox cloud: Hetzner {cloud_sandbox.hcloud_url}, Cloudflare {cloud_sandbox.cloudflare_url}, "
                   f"zone {cloud_sandbox.zone_name}")
    database = _database()
    worker_ = Worker(settings, database, concurrency=2).start()
    server = create_server(create_app(settings, database), host=host, port=port, threads=16, ident="clawdet")
    stopping = threading.Event()

    def stop(abort: bool = False) -> None:
        stopping.set()
        worker_.shutdown(0, abort=abort)
        server.close()

    _stop_on_signals(stop)
    click.echo(f"Clawdet on http://{host}:{port} (database: {_redacted(settings.database_url)})")
    try:
        server.run()
    except (OSError, ValueError):
        if not stopping.is_set():
            raise
    finally:
        worker_.shutdown()
        worker_.wait()
        if cloud_sandbox is not None:
            cloud_sandbox.stop()
        if mail_sink is not None:
            mail_sink.stop()
    click.echo("Clawdet stopped.")


def sandbox_web_env(description: dict) -> dict[str, str]:
    """What the web app reads to use the sandbox's X and LLM upstream (set only when unset)."""
    return {
        "X_CLIENT_ID": description["x_client_id"],
        "X_CLIENT_SECRET": description["x_client_secret"],
        "X_AUTHORIZE_URL": description["x_authorize_url"],
        "X_API_BASE_URL": description["x_url"],
        "LLM_PRIMARY_URL": description["llm_url"],
        "LLM_PRIMARY_KEY": description["llm_key"],
    }


def _target():
    from db.errors import UserFacingError
    from provisioner import cloud

    try:
        return cloud.resolve(_settings())
    except UserFacingError as exc:
        raise click.ClickException(f"{exc.message} {exc.action}") from exc


def _print_scan(report) -> None:
    for finding in report.findings:
        state = "drift " if finding.action else "ok    "
        detail = "; ".join(finding.problems) if finding.problems else "healthy"
        click.echo(f"{state}{finding.stack_name:<30} {detail}" + (f"  -> {finding.action}" if finding.action else ""))
    for orphan in report.orphans:
        click.echo(f"orphan {orphan:<30} a managed server no instance claims")
    click.echo(f"scan  instances={len(report.findings)} drifted={len(report.drifted)} "
               f"api_calls={report.api_calls} seconds={report.seconds:.2f}")


def _logging() -> None:
    """JSON lines with secrets masked at the logger (LOG_FORMAT=console for a terminal)."""
    from db.logs import configure

    configure(_settings())


def _redacted(url: str) -> str:
    """A database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# -- operations: email, backups ----------------------------------------------------------------

@main.command("send-mail", help="Queue due emails (welcome, quota warnings) and send every due email once.")
def send_mail() -> None:
    from provisioner import mail, mail_triggers

    settings = _settings()
    database = _database()
    queued = mail_triggers.queue_due(settings, database)
    if not settings.smtp_host:
        raise click.ClickException(f"SMTP_HOST is not set; {queued} email(s) queued, none sent. "
                                   "Set the SMTP_* variables (.env.example), then run again.")
    total = mail.DrainReport()
    while True:
        report = mail.drain(settings, database)
        total.sent, total.retried, total.failed = (total.sent + report.sent, total.retried + report.retried,
                                                   total.failed + report.failed)
        if not (report.sent or report.failed):
            break
    click.echo(f"queued={queued} " + total.line())
    if total.retried or total.failed:
        sys.exit(1)


@main.command(help="Back up the database and every instance's Pulumi stack into an empty DIR.")
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
def backup(folder: Path) -> None:
    from db.errors import UserFacingError
    from provisioner import stack_backup

    try:
        report = stack_backup.backup(_settings(), _database(), folder)
    except UserFacingError as exc:
        raise click.ClickException(f"{exc.message} {exc.action}") from exc
    click.echo(report.line())


@main.command(help="Restore a `clawdet backup` DIR into an empty database and re-import its stacks.")
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path, file_okay=False, exists=True))
def restore(folder: Path) -> None:
    from db.errors import UserFacingError
    from provisioner import stack_backup

    try:
        report = stack_backup.restore(_settings(), _database(), folder)
    except UserFacingError as exc:
        raise click.ClickException(f"{exc.message} {exc.action}") from exc
    click.echo(report.line().replace("backup ", "restored ", 1))


if __name__ == "__main__":
    main()
