"""`clawdet instance ...`: the owner's actions for operators, by subdomain. Each records the
desired state (audited as the operator) and a worker converges it, as from the dashboard."""

from __future__ import annotations

import getpass
import json
from contextlib import contextmanager

import click

from clawdet.cli import _database, _settings, main, user_errors
from clawdet.instances.requests import NAMED_CHANGES

OPERATOR = f"operator:{getpass.getuser()}"


@main.group(help="Look at one instance and change it (restart, pause, resume, tier, credentials).")
def instance() -> None:
    pass


def _active(session, subdomain: str):
    from sqlalchemy import select

    from clawdet.instances.lifecycle import InstanceStatus
    from db.models import Instance

    found = session.scalar(
        select(Instance).where(
            Instance.subdomain == subdomain.lower(), Instance.status != InstanceStatus.DESTROYED.value
        )
    )
    if found is None:
        raise click.ClickException(f"No active instance is called {subdomain!r}. See `clawdet scan`.")
    return found


@instance.command(help="Print an instance as the API shows it to its owner, plus what runs on it.")
@click.argument("subdomain")
def show(subdomain: str) -> None:
    with _database().sessions() as session:
        row = _active(session, subdomain)
        fields = ("id", "subdomain", "tier", "region", "desired_state", "status", "status_message")
        fields += ("server_id", "volume_id", "ipv4", "openclaw_image", "desired_image", "image_pinned")
        fields += ("config_hash", "restarts", "health")
        click.echo(json.dumps({name: getattr(row, name) for name in fields}, indent=2, default=str))


@contextmanager
def _acting_on(subdomain: str):
    """The active instance called `subdomain`, in a session committed when the change is made."""
    with _database().sessions() as session, user_errors():
        yield session, _active(session, subdomain)
        session.commit()


def _change_command(change: str) -> click.Command:
    @click.argument("subdomain")
    def run(subdomain: str) -> None:
        from clawdet.instances.requests import request_named

        with _acting_on(subdomain) as (session, row):
            request_named(session, OPERATOR, row, change)
        click.echo(f"{subdomain}: {change} queued; a worker converges it (see `clawdet instance show`).")

    return click.command(change, help=CHANGE_HELP[change])(run)


CHANGE_HELP = {
    "restart": "Restart the containers (not the server).",
    "pause": "Delete the server, keep the volume and firewall; the name shows the paused page.",
    "resume": "A new server from the same volume.",
    "rotate-token": "A new gateway token, pushed in place.",
    "reboot": "Reboot the server.",
    "rebuild": "Replace the server with a fresh one (the data volume stays).",
    "destroy": "Remove the instance, its volume included.",
}
for _change in NAMED_CHANGES:
    instance.add_command(_change_command(_change))


@instance.command(help="Resize in place to another tier (server type and volume; a volume never shrinks).")
@click.argument("subdomain")
@click.argument("tier")
def tier(subdomain: str, tier: str) -> None:
    from clawdet.instances.requests import request_tier_change

    with _acting_on(subdomain) as (session, row):
        request_tier_change(session, OPERATOR, row, tier)
    click.echo(f"{subdomain}: change to the {tier} tier queued.")


@instance.command("rotate-key", help="A new LLM proxy key, pushed in place; the old one works until then.")
@click.argument("subdomain")
def rotate_key(subdomain: str) -> None:
    from clawdet.instances.rotation import rotate_llm_key

    with _acting_on(subdomain) as (session, row):
        rotate_llm_key(session, row, actor=OPERATOR)
        version = row.llm_key_version
    click.echo(f"{subdomain}: LLM key version {version} queued.")


@instance.command(
    "move-credentials",
    help="Move every instance's credentials issued before the credential roots (HMACs of "
    "SECRET_KEY) onto the roots: LLM keys in place and unseen by owners; with --gateway-tokens "
    "also gateway tokens (owners then need the new one from their dashboard). Run it before "
    "rotating SECRET_KEY.",
)
@click.option("--gateway-tokens", is_flag=True, help="Rotate legacy gateway tokens as well.")
def move_credentials(gateway_tokens: bool) -> None:
    from sqlalchemy import or_, select

    from clawdet.errors import UserFacingError
    from clawdet.instances.lifecycle import DesiredState
    from clawdet.instances.requests import request_token_rotation
    from clawdet.instances.rotation import rotate_llm_key
    from db.models import Instance

    moved = waiting = 0
    with _database().sessions() as session:
        legacy = select(Instance).where(
            Instance.desired_state != DesiredState.DESTROYED.value,
            or_(Instance.llm_key_legacy, Instance.gateway_token_legacy),
        )
        for row in session.scalars(legacy).all():
            if row.llm_key_legacy:
                rotate_llm_key(session, row, actor=OPERATOR)
            if gateway_tokens and row.gateway_token_legacy:
                try:
                    request_token_rotation(session, OPERATOR, row)
                except UserFacingError as exc:  # busy or paused: the next run moves it
                    waiting += 1
                    click.echo(f"{row.subdomain}: gateway token not moved yet: {exc.message}")
            moved += 1
            session.commit()
    click.echo(f"{moved} instance(s) queued to move their credentials; {waiting} token(s) to move later.")


@instance.command(help="Pin to an OpenClaw version (default: the one it has); rollouts leave it alone.")
@click.argument("subdomain")
@click.option("--version", "version", help="Move it to this version (2026.9.7 or an image reference).")
def pin(subdomain: str, version: str | None) -> None:
    from clawdet.rollouts.pins import pin as pin_image

    with _acting_on(subdomain) as (session, row):
        image = pin_image(session, OPERATOR, row, version, by_digest=not _settings().sandbox)
    click.echo(f"{subdomain}: pinned to {image}.")


@instance.command(help="Unpin: the next rollouts move it again.")
@click.argument("subdomain")
def unpin(subdomain: str) -> None:
    from clawdet.rollouts.pins import unpin as unpin_image

    with _acting_on(subdomain) as (session, row):
        unpin_image(session, OPERATOR, row)
    click.echo(f"{subdomain}: unpinned.")
