"""The real OpenClaw gateway for a fake server, started from the server's own files.

The fake server's folder is its root file system: what cloud-init wrote and what arrived over
SSH is there under its own path, the customer's volume at its mount point (server_fs.py), the
gateway container's named volumes under `var/lib/docker/volumes/<name>/_data`. The
process runs the compose service's own command (`node dist/index.js gateway ...`) in the npm
package's folder (the image's working directory), with the service's env files and environment,
container paths mapped into the server's folder, and HOME and TMPDIR inside it too.

Networking is emulated the way Docker publishes a port: the gateway listens on a free port of
127.0.0.1 (`--bind loopback --port <free>` in place of the container's `--bind lan --port N`)
and a forwarder on the server's own 127.x address and gateway port pipes connections to it.
Stopping the server stops the process (SIGTERM, then SIGKILL) and closes the forwarder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path, PurePosixPath

from .cloud_init import GatewayConfig
from .openclaw import Install

log = logging.getLogger(__name__)

STOP_GRACE = 8.0  # seconds between SIGTERM and SIGKILL (the gateway drains in ~3.5 s)


class LaunchError(RuntimeError):
    """The server's files do not describe a gateway this runner can start."""


PATH_VARIABLE_SUFFIXES = ("_DIR", "_PATH", "_HOME", "_CACHE")  # env values that name container paths


def host_path(root: Path, path: str) -> Path:
    """A path of the fake server as a path in its folder; never outside it."""
    relative = PurePosixPath(os.path.normpath(PurePosixPath("/") / path)).relative_to("/")
    if ".." in relative.parts:
        raise LaunchError(f"{path!r} leaves the server's file system")
    return root / relative


def service_volumes(config: GatewayConfig) -> list[tuple[str, str, bool]]:
    """The gateway service's volumes, short or long syntax: (source, target, read-only); a bind
    source is made absolute against the compose file's folder."""
    found = []
    compose_dir = PurePosixPath(config.compose_dir or "/")
    for volume in (config.service or {}).get("volumes") or []:
        if isinstance(volume, dict):
            source, target = str(volume.get("source", "")), str(volume.get("target", ""))
            read_only = bool(volume.get("read_only"))
            bind = volume.get("type") == "bind"
        else:
            source, _, rest = str(volume).partition(":")
            target, *options = rest.split(":")
            read_only = "ro" in options
            bind = source.startswith(("./", "/", "../"))
        if target:
            found.append((str(compose_dir / source) if bind else source, target, read_only))
    return found


def mounts(root: Path, config: GatewayConfig) -> dict[str, Path]:
    """Container path -> host path for the gateway service's volumes."""
    table: dict[str, Path] = {}
    for source, target, _read_only in service_volumes(config):
        if source.startswith("/"):  # a bind mount
            table[target] = host_path(root, source)
        else:  # a named volume
            table[target] = root / "var/lib/docker/volumes" / source / "_data"
    return table


def to_host(root: Path, table: dict[str, Path], container_path: str) -> str:
    """A container path as the host sees it: through a mount, or inside the server's folder."""
    for target in sorted(table, key=len, reverse=True):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return str(table[target] / os.path.relpath(container_path, target))
    return str(host_path(root, container_path))


def container_environment(root: Path, table: dict[str, Path], config: GatewayConfig) -> dict[str, str]:
    """The container's environment with its paths in the server's folder; makes the mount
    sources that are missing (as Docker does), HOME and TMPDIR."""
    for host in table.values():
        if not host.exists():
            host.mkdir(parents=True)
    home, tmp = root / "home/node", root / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp), "LANG": "C.UTF-8"}
    for name, value in config.environment().items():
        is_path = value.startswith("/") and name.endswith(PATH_VARIABLE_SUFFIXES)
        env[name] = to_host(root, table, value) if is_path else value
    return env


def launch_argv(install: Install, config: GatewayConfig, local_port: int) -> list[str]:
    """The service's command with the container's network swapped for a loopback port."""
    command = (config.service or {}).get("command")
    if isinstance(command, str):
        command = command.split()
    if not command or command[0] != "node" or "gateway" not in command:
        raise LaunchError(f"the gateway service's command is not `node ... gateway ...`: {command!r}")
    argv = [str(install.node)]
    args = iter(command[1:])
    for arg in args:
        if arg == "--bind":
            next(args, None)
            argv += ["--bind", "loopback"]
        elif arg == "--port":
            next(args, None)
            argv += ["--port", str(local_port)]
        else:
            argv.append(arg)
    return argv


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RealGateway:
    def __init__(self, install: Install, root: Path, address: str, port: int, config: GatewayConfig):
        self.install, self.root, self.address, self.port, self.config = install, root, address, port, config
        self.local_port = 0
        self.process: asyncio.subprocess.Process | None = None
        self._forwarder: asyncio.base_events.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        if not self.config.runnable:
            raise LaunchError("the server has no compose service and openclaw.json to start from")
        env = container_environment(self.root, mounts(self.root, self.config), self.config)
        self.local_port = free_local_port()
        argv = launch_argv(self.install, self.config, self.local_port)
        output = open(self.root / "gateway.log", "ab")  # noqa: SIM115 (handed to the process)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.install.package_dir,
                env=self.install.env(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        finally:
            output.close()
        self._forwarder = await asyncio.start_server(
            self._forward, self.address, self.port, reuse_address=True
        )
        log.info("real gateway pid %s for %s on 127.0.0.1:%s", self.pid, self.address, self.local_port)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.local_port)
        except OSError:
            writer.close()  # the process is not listening (yet): like a refused connection
            return
        pipes = [
            asyncio.create_task(_pipe(reader, upstream_writer)),
            asyncio.create_task(_pipe(upstream_reader, writer)),
        ]
        self._pipes.update(pipes)
        for pipe in pipes:
            pipe.add_done_callback(self._pipes.discard)
        await asyncio.gather(*pipes, return_exceptions=True)

    async def stop(self) -> None:
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        for pipe in list(self._pipes):
            pipe.cancel()
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    @property
    def exited(self) -> int | None:
        """The process's exit status once it has died (None while it runs)."""
        return self.process.returncode if self.process is not None else None

    def kill_now(self) -> None:
        """From outside the loop (interpreter exit): leave no gateway process behind."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
