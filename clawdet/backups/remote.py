"""A backup made on the instance's server, over the platform's SSH key: OpenClaw's own
`openclaw backup create` and `backup verify` in the running gateway container (its state is the
customer's volume, bind-mounted), the archive written to the backups folder on that volume and
fetched over SFTP, then removed from the server."""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from programs.cloud_init import BACKUPS_IN_CONTAINER, BACKUPS_ON_VOLUME, COMPOSE_FILE_PATH

log = logging.getLogger(__name__)

COMPOSE = f"docker compose --file {COMPOSE_FILE_PATH}"
GATEWAY = "openclaw"
OPENCLAW = "node dist/index.js"  # the image's own CLI, as the service's command runs it
CONNECT_TIMEOUT = 15.0
CONNECT_ATTEMPTS = 3
COMMAND_TIMEOUT = 900.0  # one backup command; a large workspace takes minutes
TRANSFER_TIMEOUT = 3600.0


class RemoteError(RuntimeError):
    """A step on the server failed; the message says which and why (no secrets in it)."""


@dataclass(frozen=True)
class Server:
    address: str
    port: int
    private_key: str = field(repr=False)


@dataclass(frozen=True)
class Archive:
    path: Path
    size: int
    verified: bool
    verify_message: str


def fetch_backup(server: Server, name: str, target: Path) -> Archive:
    """Makes a backup called `name` on the server and fetches OpenClaw's archive to `target`."""
    return asyncio.run(_fetch_backup(server, name, target))


async def _fetch_backup(server: Server, name: str, target: Path) -> Archive:
    """The gateway writes the archive to the backups folder on the customer's volume (mounted in
    its container), where SFTP fetches it."""
    inside, on_volume = f"{BACKUPS_IN_CONTAINER}/{name}.tar.gz", f"{BACKUPS_ON_VOLUME}/{name}.tar.gz"
    async with await connect(server) as connection:
        try:
            await run(connection, exec_openclaw("backup", "create", "--output", inside, "--json"), "create")
            verified, verify_message = await _verify(connection, inside)
            async with connection.start_sftp_client() as sftp:
                await asyncio.wait_for(sftp.get(on_volume, str(target)), TRANSFER_TIMEOUT)
        except asyncssh.Error as exc:  # a lost connection, an SFTP failure: not OSErrors
            raise RemoteError(f"the connection to the server failed ({type(exc).__name__})") from exc
        finally:
            await _quietly(connection, f"rm -f {on_volume}")
    return Archive(target, target.stat().st_size, verified, verify_message)


async def _verify(connection: asyncssh.SSHClientConnection, inside: str) -> tuple[bool, str]:
    result = await _run(connection, exec_openclaw("backup", "verify", inside, "--json"))
    report = _json(result.stdout)
    if result.exit_status == 0 and report.get("ok"):
        return True, f"openclaw backup verify: ok ({report.get('entryCount', '?')} entries)"
    error = (report.get("error") or {}).get("message") or _tail(result.stderr)
    return False, f"openclaw backup verify failed: {error}"


def exec_openclaw(*args: str) -> str:
    return f"{COMPOSE} exec -T {GATEWAY} {OPENCLAW} " + " ".join(shlex.quote(arg) for arg in args)


async def connect(server: Server) -> asyncssh.SSHClientConnection:
    key = asyncssh.import_private_key(server.private_key)
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            return await asyncssh.connect(
                server.address,
                server.port,
                username="root",
                client_keys=[key],
                known_hosts=None,  # as the deploy's remote commands: servers are reached by address
                connect_timeout=CONNECT_TIMEOUT,
                login_timeout=CONNECT_TIMEOUT,
                agent_path=None,
            )
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            if attempt == CONNECT_ATTEMPTS:
                raise RemoteError(f"could not reach the server over SSH ({type(exc).__name__})") from None
            log.info("backup: SSH to %s failed (%s), attempt %d", server.address, type(exc).__name__, attempt)
            await asyncio.sleep(2.0 * attempt)
    raise AssertionError("unreachable")


async def run(
    connection: asyncssh.SSHClientConnection, command: str, step: str
) -> asyncssh.SSHCompletedProcess:
    result = await _run(connection, command)
    if result.exit_status != 0:
        report = _json(result.stdout)
        reason = (report.get("error") or {}).get("message") or _tail(result.stderr) or _tail(result.stdout)
        raise RemoteError(f"{step} failed on the server (exit {result.exit_status}): {reason}")
    return result


async def _run(connection: asyncssh.SSHClientConnection, command: str) -> asyncssh.SSHCompletedProcess:
    try:
        return await connection.run(command, check=False, timeout=COMMAND_TIMEOUT)
    except asyncssh.TimeoutError:
        raise RemoteError(f"a command on the server took longer than {COMMAND_TIMEOUT:.0f} s") from None


async def _quietly(connection: asyncssh.SSHClientConnection, command: str) -> None:
    try:
        await connection.run(command, check=False, timeout=60)
    except (OSError, asyncssh.Error) as exc:
        log.info("backup: clean-up on the server failed: %s", type(exc).__name__)


def _json(text: str | bytes | None) -> dict:
    try:
        value = json.loads(text or "")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _tail(text: str | bytes | None, limit: int = 400) -> str:
    text = text.decode(errors="replace") if isinstance(text, bytes) else (text or "")
    return " ".join(text.split())[-limit:]
