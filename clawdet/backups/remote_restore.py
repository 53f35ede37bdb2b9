"""A restore on the instance's server, in place: OpenClaw's own `openclaw backup restore` stages
the archive into a fresh folder on the customer's volume (a one-off container of the gateway's
image, the gateway stopped), the state folder is swapped for the restored one with two renames,
and the gateway starts on it. Until the new gateway answers, the previous state is kept beside it
and any failure swaps it back and starts the gateway on it again. A restore whose worker died
is finished by `recover`, which puts that previous state back the same way."""

from __future__ import annotations

import asyncio
import shlex
import stat
from collections.abc import Callable
from pathlib import Path

import asyncssh

from clawdet.backups.hold import HoldLost
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
    server: Server,
    archive: Path,
    name: str,
    state_asset: str,
    healthy: Callable[[], bool],
    still_held: Callable[[], None],
) -> None:
    """`state_asset`: the state folder's path inside the archive (its manifest's state asset);
    `healthy`: whether the restarted gateway answers (called once it was started); `still_held`
    raises RemoteError when the restore's hold on the instance is lost (checked before each step
    that changes the server)."""
    asyncio.run(_restore(server, archive, name, state_asset, healthy, still_held))


async def _restore(server: Server, archive: Path, name: str, state_asset: str, healthy, still_held) -> None:
    staged, target, previous = f"{STAGING}/{name}.tar.gz", f"{STAGING}/{name}", f"{STAGING}/previous-{name}"
    replaced = f"{STAGING}/replaced-{name}"
    restored = f"{target}/{state_asset}"
    async with await connect(server) as connection:
        # The one-off container runs as the gateway's user (uid 1000), without capabilities.
        await run(connection, f"install -d -m 0700 -o {UID} -g {UID} {STAGING}", "prepare the restore folder")
        moved_aside = swapped = hold_lost = False
        try:
            async with connection.start_sftp_client() as sftp:
                await asyncio.wait_for(sftp.put(str(archive), f"{staged}.upload"), TRANSFER_TIMEOUT)
            await run(
                connection,
                f"install -m 0600 -o {UID} -g {UID} {staged}.upload {staged}",
                "hand the archive over",
            )
            still_held()
            await run(connection, f"{COMPOSE} stop", "stop the gateway")
            try:
                await run(connection, _stage(name), "openclaw backup restore")
                if not await _is_real_folder(connection, target, state_asset):
                    raise RemoteError(f"the restored state {state_asset} is not a plain folder on the server")
                still_held()
                await run(connection, f"mv -T {STATE_ON_VOLUME} {previous}", "move the current state aside")
                moved_aside = True
                await run(
                    connection,
                    f"mv -T {shlex.quote(restored)} {STATE_ON_VOLUME}",
                    "put the restored state in place",
                )
                swapped = True
                still_held()
                await run(connection, f"{COMPOSE} up --detach", "start the gateway on the restored state")
                if not await asyncio.to_thread(healthy):
                    raise RemoteError("the gateway did not come back healthy on the restored state")
                still_held()  # a recovery that took over meanwhile decides, not this worker
                # Healthy on the restored state; the old one is in its backup. Renamed before it is
                # deleted: a `previous-` folder is always whole, for `recover` to put back.
                await _quietly(connection, f"mv -T {previous} {replaced}")
                moved_aside = False
            except BaseException as failure:
                if isinstance(failure, HoldLost):  # the recovery that took over puts things right
                    hold_lost = True
                    raise
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
            leftovers = f"{staged} {staged}.upload {target} {STAGING}/failed-{name} {replaced}" + (
                "" if moved_aside else f" {previous}"  # never the previous state while it is not back
            )
            if not hold_lost:
                await _quietly(connection, f"rm -rf {leftovers}")


async def _is_real_folder(connection: asyncssh.SSHClientConnection, base: str, relative: str) -> bool:
    """Whether `base/relative` is a folder reached through no symbolic link below `base`: the
    archive is the customer's, and `test -d` follows links (SFTP's lstat does not)."""
    path = base
    async with connection.start_sftp_client() as sftp:
        for part in (part for part in relative.split("/") if part not in ("", ".")):
            path = f"{path}/{part}"
            try:
                attributes = await sftp.lstat(path)
            except asyncssh.SFTPNoSuchFile:
                return False
            if not stat.S_ISDIR(attributes.permissions or 0):
                return False
    return True


def recover(server: Server) -> None:
    """After a restore whose worker died: the previous state it moved aside, if any, back in place
    as `_roll_back` puts it (the unconfirmed restored state moved aside first, nothing deleted
    before the previous state is back), the gateway started, the staging folder emptied."""
    asyncio.run(_recover(server))


async def _recover(server: Server) -> None:
    async with await connect(server) as connection:
        try:
            async with connection.start_sftp_client() as sftp:
                kept = [n for n in await _names(sftp, STAGING) if n.startswith("previous-")]
                state_there = await sftp.lexists(STATE_ON_VOLUME)
            if len(kept) > 1:
                raise RemoteError(f"several previous states are kept in {STAGING}: an operator must choose")
            if kept:
                name = kept[0].removeprefix("previous-")
                failed = f"{STAGING}/failed-{name}" if state_there else None
                await _roll_back(connection, f"{STAGING}/{kept[0]}", True, failed)
            elif state_there:
                await run(connection, f"{COMPOSE} up --detach", "start the gateway")
            else:
                raise RemoteError(f"neither {STATE_ON_VOLUME} nor a previous state is on the server")
        except asyncssh.Error as exc:
            raise RemoteError(f"the connection to the server failed ({type(exc).__name__})") from exc
        await _quietly(connection, f"rm -rf {STAGING}")  # a restore makes it anew


async def _names(sftp: asyncssh.SFTPClient, folder: str) -> list[str]:
    try:
        return [name for name in await sftp.listdir(folder) if name not in (".", "..")]
    except asyncssh.SFTPNoSuchFile:
        return []


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
