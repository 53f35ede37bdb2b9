"""`clawdet web`, `clawdet run` (everything in one process) and `clawdet sandbox`."""

from __future__ import annotations

import sys

import click

from clawdet.cli import _logging, _redacted, _settings, _stop_on_signals, main
from clawdet.settings import Settings

PORT_HELP = "Port to serve on (default: $PORT, 8000); PUBLIC_URL and the LLM proxy URL follow it."


@main.command(help="Serve the web app (waitress) on 127.0.0.1:$PORT.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help=PORT_HELP)
@click.option("--threads", default=16, show_default=True, type=int)
def web(host: str, port: int | None, threads: int) -> None:
    from waitress import serve

    from webapp import create_app

    _logging()
    settings = _settings(**_port(port))
    app = create_app(settings)
    click.echo(f"Clawdet web on http://{host}:{settings.port} (database: {_redacted(settings.database_url)})")
    serve(app, host=host, port=settings.port, threads=threads, ident="clawdet")


def _port(port: int | None) -> dict[str, str]:
    return {"PORT": str(port)} if port else {}


def _unset(variables: dict[str, str]) -> dict[str, str]:
    """The variables that neither the environment nor .env sets (those win)."""
    import os

    return {name: value for name, value in variables.items() if not os.environ.get(name)}


def _sandbox_args(settings: Settings) -> list[str]:
    return [
        "--state",
        str(settings.data_dir / "sandbox" / "state.json"),
        "--zone",
        settings.base_domain,
        "--real-gateways",
        str(settings.sandbox_real_gateways),
    ]


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    help="Run the sandbox cloud (Hetzner, Cloudflare, X, LLM stand-ins); --help for its options.",
)
@click.pass_context
def sandbox(ctx: click.Context) -> None:
    from sandbox.cli import main as sandbox_main

    sys.exit(sandbox_main(_sandbox_args(_settings()) + ctx.args))


@main.command(
    help="The whole control plane in one process: the sandbox cloud (unless cloud "
    "credentials are set), one worker and the web app."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help=PORT_HELP)
def run(host: str, port: int | None) -> None:
    import threading

    from waitress import create_server

    from clawdet.cloud import sandbox_description_path
    from clawdet.reconciler.worker import Worker
    from db.engine import Database
    from db.migrate import upgrade
    from webapp import create_app

    _logging()
    overrides = _port(port)
    settings = _settings(**overrides)
    upgrade(settings.database_url)
    cloud_sandbox = mail_sink = None
    if not settings.smtp_host:
        from sandbox.mail_sink import MailSink

        mail_sink = MailSink(settings.data_dir / "sandbox" / "mail").start()
        overrides |= _unset(mail_sink.env())
        settings = _settings(**overrides)
    if settings.sandbox:
        from sandbox import Sandbox

        cloud_sandbox = Sandbox(
            settings.data_dir / "sandbox" / "state.json",
            zone_name=settings.base_domain,
            real_gateways=settings.sandbox_real_gateways,
        )
        cloud_sandbox.start()
        cloud_sandbox.write_env_file(sandbox_description_path(settings))
        overrides |= _unset(sandbox_web_env(cloud_sandbox.describe()))
        settings = _settings(**overrides)
        click.echo(
            f"Sandbox cloud: Hetzner {cloud_sandbox.hcloud_url}, Cloudflare {cloud_sandbox.cloudflare_url}, "
            f"zone {cloud_sandbox.zone_name}"
        )
    database = Database(settings.database_url)
    worker_ = Worker(settings, database, concurrency=2).start()
    server = create_server(
        create_app(settings, database), host=host, port=settings.port, threads=16, ident="clawdet"
    )
    stopping = threading.Event()

    def stop(abort: bool = False) -> None:
        stopping.set()
        worker_.shutdown(0, abort=abort)
        server.close()

    _stop_on_signals(stop)
    click.echo(f"Clawdet on http://{host}:{settings.port} (database: {_redacted(settings.database_url)})")
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
