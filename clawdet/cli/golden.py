"""`clawdet golden build` and `clawdet golden show`: golden snapshots (programs/golden/), one per
OpenClaw version (OPENCLAW_IMAGE) and region, which new instances boot from."""

from __future__ import annotations

import click

from clawdet.cli import _database, _logging, _settings, _target, main, user_errors
from programs.tiers import LOCATIONS as REGIONS


@main.group(help="Golden snapshots new instances boot from (Docker and the pinned images on them).")
def golden() -> None:
    pass


@golden.command(
    help="Build the snapshot for the configured OpenClaw version in REGION, then delete the builder."
)
@click.argument("region", type=click.Choice(REGIONS))
def build(region: str) -> None:
    from clawdet.reconciler import golden as golden_snapshots

    _logging()
    with user_errors():
        made = golden_snapshots.build(
            _settings(),
            _target(),
            _database().installation_id,
            region,
            on_output=lambda line: click.echo(line, nl=False),
        )
    click.echo(f"Golden snapshot {made.image_id}: OpenClaw {made.openclaw_version} in {made.region}")


@golden.command(help="The snapshot new instances in REGION boot from (none: the stock image).")
@click.argument("region", type=click.Choice(REGIONS))
def show(region: str) -> None:
    from clawdet import cloud
    from clawdet.reconciler import golden as golden_snapshots

    with user_errors():
        settings = _settings()
        openclaw_image, caddy_image, browser_image = golden_snapshots.images_of(settings)
        try:
            found = golden_snapshots.newest(
                _target(),
                _database().installation_id,
                openclaw_image,
                region,
                caddy_image=caddy_image,
                browser_image=browser_image,
            )
        except (cloud.ApiError, ValueError) as exc:
            raise click.ClickException(f"Could not look up the golden snapshot in {region}: {exc}") from exc
    click.echo(f"golden snapshot {found}" if found else "none: new instances boot from the stock image")
