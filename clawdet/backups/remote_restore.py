"""A restore on the instance's server, in place: OpenClaw's own `openclaw backup restore` stages
the archive into a fresh folder on the customer's volume (a one-off container of the gateway's
image, the gateway stopped), the state folder is swapped for the restored one with two renames,
and the gateway starts on it. Until the new gateway answers, the previous state is kept beside it
and any failure swaps it back and starts the gateway on it again."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from pathlib import Path

import asyncssh

from clawdet.backups.remote import (
    COMPOSE,
    GATEWAY,
    OPENCLAW,
    TRANSFER_TIMEOUT,
    RemoteError,
    Server,
    connect,
    run,
)
from programs.cloud_init import DATA_MOUNT, STATE_ON_VOLUME

STAGING = f"{DATA_MOUNT}/clawdet-restore"  # on the volume, beside the state folder (same file system)
INSIDE = "/restore"  # where the one-off container sees it
UID = 1000  # the gateway container's user (cloud-init/compose.yaml)


def restore_in_place(
    server: Server, archive: Path, name: str, state_asset: str, healthy: Callable[[], bool]
) -> None:
    """`state_asset`: the state folder's path inside the archive (its manifest's state asset);
    `healthy`: whether the restarted gateway answers (called once it was started)."""
    asyncio.run(_restore(server, archive, name, state_asset, healthy))


async def _restore(server: Server, archive: Path, name: str, state_asset: str, healthy) -> None:
    staged, target, previous = f"{STAGING}/{name}.tar.gz", f"{STAGING}/{name}", f"{STAGING}/previous-{name}"
    restored = f"{target}/{state_asset}"
    async with await connect(server) as connection:
        # The one-off container runs as the gateway's user (uid 1000), without capabilities.
        await run(connection, f"install -d -m 0700 -o {UID} -g {UID} {STAGING}", "prepare the restore folder")
        moved_aside = swapped = False
        try:
            async with connection.start_sftp_client() as sftp:
                await asyncio.wait_for(sftp.put(str(archive), f"{staged}.upload"), TRANSFER_TIMEOUT)
            await run(
                connection,
                f"install -m 0600 -o {UID} -g {UID} {staged}.upload {staged}",
                "hand the archive over",
            )
            await run(connection, f"{COMPOSE} stop", "stop the gateway")
            try:
                await run(connection, _stage(name), "openclaw backup restore")
                await run(connection, f"test -d {shlex.quote(restored)}", "find the restored state")
                await run(connection, f"mv -T {STATE_ON_VOLUME} {previous}", "move the current state aside")
                moved_aside = True
                await run(
                    connection,
                    f"mv -T {shlex.quote(restored)} {STATE_ON_VOLUME}",
                    "put the restored state in place",
                )
                swapped = True
                await run(connection, f"{COMPOSE} up --detach", "start the gateway on the restored state")
                if not await asyncio.to_thread(healthy):
                    raise RemoteError("the gateway did not come back healthy on the restored state")
                moved_aside = False  # healthy on the restored state; the old one is in its backup
            except BaseException as failure:
                try:
                    await _roll_back(
                        connection, previous, moved_aside, f"{STAGING}/failed-{name}" if swapped else None
                    )
                except RemoteError as exc:
                    raise RemoteError(
                        f"{failure}; putting the previous state back failed too ({exc}): it is kept at "
                        f"{previous} on the server"
                    ) from None
                moved_aside = False  # it is back in place
                raise
        except asyncssh.Error as exc:  # a lost connection, an SFTP failure: not OSErrors
            raise RemoteError(f"the connection to the server failed ({type(exc).__name__})") from exc
        finally:
            leftovers = f"{staged} {staged}.upload {target} {STAGING}/failed-{name}" + (
                "" if moved_aside else f" {previous}"  # never the previous state while it is not back
            )
            await _quietly(connection, f"rm -rf {leftovers}")


def _stage(name: str) -> str:
    args = ["backup", "restore", f"{INSIDE}/{name}.tar.gz", "--target", f"{INSIDE}/{name}", "--json"]
    return f"{COMPOSE} run --rm --no-deps -T --volume {STAGING}:{INSIDE} {GATEWAY} {OPENCLAW} " + " ".join(
        shlex.quote(arg) for arg in args
    )


async def _roll_back(
    connection: asyncssh.SSHClientConnection, previous: str, moved_aside: bool, failed: str | None
) -> None:
    """The previous state back in place, as far as the restore got, and the gateway started on it."""
    if failed is not None:
        await _quietly(connection, f"{COMPOSE} stop")
        await run(connection, f"mv -T {STATE_ON_VOLUME} {failed}", "move the restored state aside")
    if moved_aside:
        await run(connection, f"mv -T {previous} {STATE_ON_VOLUME}", "put the previous state back")
    await run(connection, f"{COMPOSE} up --detach", "start the gateway on the previous state")


async def _quietly(connection: asyncssh.SSHClientConnection, command: str) -> None:
    try:
        await connection.run(command, check=False, timeout=120)
    except (OSError, asyncssh.Error):
        pass
