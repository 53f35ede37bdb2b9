"""`clawdet web`, `clawdet run` (everything in one process) and `clawdet sandbox`."""

from __future__ import annotations

import sys

import click

from clawdet.cli import _logging, _redacted, _settings, _stop_on_signals, main, user_errors
from clawdet.settings import Settings

PORT_HELP = "Port to serve on (default: $PORT, 8000); PUBLIC_URL and the LLM proxy URL follow it."


@main.command(help="Serve the web app and its streams (uvicorn) on 127.0.0.1:$PORT.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help=PORT_HELP)
@click.option(
    "--threads", default=16, show_default=True, type=int, help="Threads for pages and the JSON API."
)
def web(host: str, port: int | None, threads: int) -> None:
    _logging()
    settings = _front_settings(port, "web")
    click.echo(f"Clawdet web on http://{host}:{settings.port} (database: {_redacted(settings.database_url)})")
    uvicorn_server(web_app(settings, threads=threads), host, settings.port).run()


@main.command(
    help="Serve only the streams: the LLM proxy and the progress streams (uvicorn), as many "
    "processes as the traffic needs, behind the same front proxy as `clawdet web`."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help=PORT_HELP)
def proxy(host: str, port: int | None) -> None:
    from streams import create_app

    _logging()
    settings = _front_settings(port, "proxy")
    click.echo(
        f"Clawdet streams on http://{host}:{settings.port} (database: {_redacted(settings.database_url)})"
    )
    uvicorn_server(
        create_app(settings, settle_heap_at_start=True), host, settings.port, grace_seconds=60
    ).run()


def _front_settings(port: int | None, tier: str) -> Settings:
    """The web app's and the proxy's settings: none of the secrets only others may hold (a leak
    of the public tier's environment must not reach the clouds, the stacks or the instances'
    credentials), and none made up that every replica must share."""
    settings = _settings(**_port(port))
    refusals = settings.not_for(tier)
    if refusals:
        raise click.ClickException(
            f"`clawdet {tier}` refuses to start: {'; '.join(refusals)}. A workers-only secret belongs "
            "in the workers' environment alone (compose: worker.env), GATEWAY_TOKEN_ROOT in the web "
            "app's and the workers' (web.env), and a shared secret must be set the same everywhere "
            "(see .env.example)."
        )
    return settings


def web_app(settings: Settings, database=None, threads: int = 16):
    """The stream server with the Flask app behind it: everything on one port."""
    from db.engine import Database
    from streams import create_app
    from webapp import create_app as create_web_app

    database = database or Database(settings.database_url)
    return create_app(settings, database, wsgi=create_web_app(settings, database), wsgi_threads=threads)


def uvicorn_server(app, host: str, port: int, grace_seconds: int = 10):
    """uvicorn for `app`; when it stops, open progress streams end at once (browsers reconnect
    elsewhere) and LLM streams get `grace_seconds` to finish."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            services = getattr(app.state, "services", None)
            if services is not None:
                services.hub.close_streams()
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        proxy_headers=False,  # the web app's ProxyFix trusts TRUSTED_PROXIES hops, nothing else does
        log_config=None,
        access_log=False,
        server_header=False,
        backlog=4096,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=grace_seconds,
    )
    return Server(config)


def _port(port: int | None) -> dict[str, str]:
    return {"PORT": str(port)} if port else {}


SANDBOX_REFUSES = (
    "LLM_PRIMARY_KEY",
    "X_CLIENT_ID",
    "X_CLIENT_SECRET",
    "SMTP_HOST",
    "SMTP_USER",
    "SMTP_PASSWORD",
)


def _as_a_set(variables: dict[str, str]) -> dict[str, str]:
    """The sandbox's own services, all of them or none: a real credential set beforehand (an LLM
    key, a mail server) would mix real and fake services, and reach a fake one. Addresses and
    ports (.env.example's defaults, say) are simply replaced."""
    import os

    already = sorted(name for name in SANDBOX_REFUSES if os.environ.get(name))
    if already:
        raise click.ClickException(
            f"The sandbox provides {', '.join(already)} itself: unset them (environment or .env), "
            "or set CLAWDET_SANDBOX=false to use real services."
        )
    return variables


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
    help="The whole control plane in one process: one worker, the web app and, with "
    "CLAWDET_SANDBOX=true (make run), the sandbox cloud and a mail sink."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help=PORT_HELP)
def run(host: str, port: int | None) -> None:
    from clawdet.cloud import sandbox_description_path
    from clawdet.reconciler.worker import Worker
    from db.engine import Database
    from db.migrate import upgrade

    _logging()
    overrides = _port(port)
    settings = _settings(**overrides)
    upgrade(settings.database_url)
    cloud_sandbox = mail_sink = None
    if settings.sandbox:
        from sandbox import Sandbox
        from sandbox.mail_sink import MailSink

        mail_sink = MailSink(settings.data_dir / "sandbox" / "mail").start()
        cloud_sandbox = Sandbox(
            settings.data_dir / "sandbox" / "state.json",
            zone_name=settings.base_domain,
            real_gateways=settings.sandbox_real_gateways,
        )
        cloud_sandbox.start()
        cloud_sandbox.write_env_file(sandbox_description_path(settings))
        overrides |= _as_a_set(mail_sink.env() | sandbox_web_env(cloud_sandbox.describe()))
        settings = _settings(**overrides)
        click.echo(
            f"Sandbox cloud: Hetzner {cloud_sandbox.hcloud_url}, Cloudflare {cloud_sandbox.cloudflare_url}, "
            f"zone {cloud_sandbox.zone_name}, mail at /_sandbox/mail (admins)"
        )
    database = Database(settings.database_url)
    with user_errors():
        worker_ = Worker(settings, database, concurrency=2).start()
    server = uvicorn_server(web_app(settings, database), host, settings.port)

    def stop(abort: bool = False) -> None:
        worker_.shutdown(0, abort=abort)
        server.should_exit = True

    _stop_on_signals(stop)  # uvicorn takes the signal while it serves, then hands it on here
    click.echo(f"Clawdet on http://{host}:{settings.port} (database: {_redacted(settings.database_url)})")
    try:
        server.run()
    finally:
        worker_.shutdown()
        worker_.wait()
        if cloud_sandbox is not None:
            cloud_sandbox.stop()
        if mail_sink is not None:
            mail_sink.stop()
    click.echo("Clawdet stopped.")


def sandbox_web_env(description: dict) -> dict[str, str]:
    """What the web app reads to use the sandbox's X and LLM upstream."""
    return {
        "X_CLIENT_ID": description["x_client_id"],
        "X_CLIENT_SECRET": description["x_client_secret"],
        "X_AUTHORIZE_URL": description["x_authorize_url"],
        "X_API_BASE_URL": description["x_url"],
        "LLM_PRIMARY_URL": description["llm_url"],
        "LLM_PRIMARY_KEY": description["llm_key"],
    }
