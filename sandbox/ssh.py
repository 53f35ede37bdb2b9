"""The SSH server of a fake server (asyncssh), on its own 127.x address and the sandbox's SSH port.

As an Ubuntu server on Hetzner with cloud-init: the host key is the server's own ed25519 key,
kept in its folder (``etc/ssh/ssh_host_ed25519_key``); only ``root`` logs in, with a public key
that cloud-init gave it (the cloud-config's ``ssh_authorized_keys`` and the Hetzner SSH keys the
server was created with): no password, no keyboard-interactive. A connection the server's
Hetzner firewalls do not let in is closed before the SSH handshake. Environment requests are
refused (OpenSSH without ``AcceptEnv``). ``exec`` runs in the emulated shell (remote_shell.py);
the ``sftp`` subsystem is confined to the server's file system (server_fs.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import asyncssh
from asyncssh.sftp import MIN_SFTP_VERSION

from .remote_shell import RemoteShell
from .server_fs import OutsideServer, ServerFS

log = logging.getLogger(__name__)

HOST_KEY_PATH = "etc/ssh/ssh_host_ed25519_key"
LOGIN_GRACE = 30.0  # seconds a client has to authenticate (OpenSSH's LoginGraceTime is 120)
ONLY_COMMANDS = "This sandbox server runs commands only: ssh root@HOST 'command'\n"


class Gate(Protocol):
    """What the SSH server asks the fake server it belongs to."""

    def admits(self, client_address: str) -> bool:
        """Whether the server's firewalls let a new TCP connection from this address in."""
        ...

    def root_keys(self) -> Iterable[str]:
        """root's authorized keys (authorized_keys lines)."""
        ...

    def filesystem(self) -> ServerFS: ...

    def shell(self) -> RemoteShell: ...


def host_key(root: Path) -> asyncssh.SSHKey:
    """The server's ed25519 host key, made at its first boot and kept in its folder."""
    path = root / HOST_KEY_PATH
    if path.exists():
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    key.write_private_key(path)
    os.chmod(path, 0o600)
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    return key


def public_key_line(key: asyncssh.SSHKey) -> str:
    """``ssh-ed25519 AAAA...``: for authorized_keys and known_hosts."""
    return key.export_public_key().decode().strip()


def parse_keys(lines: Iterable[str]) -> list[asyncssh.SSHKey]:
    keys = []
    for line in lines:
        try:
            keys.append(asyncssh.import_public_key(line.strip()))
        except (asyncssh.KeyImportError, ValueError):
            log.debug("skipping an authorized key the server cannot read: %.40s", line)
    return keys


class ConfinedSFTP(asyncssh.SFTPServer):
    """SFTP inside the server's file system: ``/`` is its folder, ``..`` stops there, and a path
    that resolves outside (through a symlink) is refused."""

    def __init__(self, chan: asyncssh.SSHServerChannel, fs: ServerFS) -> None:
        super().__init__(chan)
        self._fs = fs

    def map_path(self, path: bytes) -> bytes:
        try:
            return os.fsencode(self._fs.host(os.fsdecode(path)))
        except OutsideServer:
            raise asyncssh.SFTPPermissionDenied("outside the server's file system")

    def reverse_map_path(self, path: bytes) -> bytes:
        guest = self._fs.guest(os.fsdecode(path))
        if guest is None:
            raise asyncssh.SFTPNoSuchFile("File not found")
        return os.fsencode(guest)

    def readlink(self, path: bytes) -> bytes:
        target = os.readlink(self.map_path(path))
        return self.reverse_map_path(os.fsencode(target)) if os.path.isabs(target) else os.fsencode(target)


def _refuse_environment(packet: object) -> bool:
    return False


class _Connection(asyncssh.SSHServer):
    def __init__(self, listener: SSHListener) -> None:
        self._listener = listener
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._listener.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._listener.connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if username != "root":
            return False
        presented = key.public_data
        return any(known.public_data == presented for known in parse_keys(self._listener.gate.root_keys()))

    def session_requested(self) -> tuple[asyncssh.SSHServerChannel, asyncssh.SSHServerProcess]:
        assert self._conn is not None
        channel = self._conn.create_server_channel()
        # asyncssh accepts every env request; OpenSSH without AcceptEnv refuses them.
        channel._process_env_request = _refuse_environment  # type: ignore[method-assign]
        gate = self._listener.gate
        process = asyncssh.SSHServerProcess(
            self._listener.run_command,
            lambda chan: ConfinedSFTP(chan, gate.filesystem()),
            MIN_SFTP_VERSION,
            False,
        )
        return channel, process


class SSHListener:
    def __init__(self, address: str, port: int, key: asyncssh.SSHKey, gate: Gate) -> None:
        self.address, self.port, self.key, self.gate = address, port, key, gate
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._socket: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def listening(self) -> bool:
        return self._socket is not None

    async def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.address, self.port))
            listener.listen(64)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._socket = listener
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)

    def _accept(self) -> None:
        if self._socket is None:
            return
        while True:
            try:
                client, (peer, _port) = self._socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, say: try again when readable
                log.warning("ssh listener on %s:%s could not accept: %s", self.address, self.port, exc)
                return
            if not self.gate.admits(peer):  # a firewall drops it: no SSH banner
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            client.setblocking(False)
            task = asyncio.get_running_loop().create_task(self._serve(client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """At once: the port is free and every connection is cut."""
        listener, self._socket = self._socket, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()
        for conn in list(self.connections):
            conn.abort()
        for task in self._tasks:
            task.cancel()

    async def stop(self) -> None:
        self.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _serve(self, client: socket.socket) -> None:
        try:
            await asyncssh.run_server(
                client,
                server_factory=lambda: _Connection(self),
                server_host_keys=[self.key],
                login_timeout=LOGIN_GRACE,
                gss_host=None,
                allow_scp=False,
                agent_forwarding=False,
                x11_forwarding=False,
            )
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            log.debug("ssh connection to %s ended before login: %s", self.address, exc)

    async def run_command(self, process: asyncssh.SSHServerProcess) -> None:
        if process.command is None:
            process.stderr.write(ONLY_COMMANDS)
            process.exit(1)
            return
        task = asyncio.current_task()
        if task is not None:  # a power-off ends it with the connection
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        result = await self.gate.shell().run(process.command)
        try:
            process.stdout.write(result.stdout)
            if result.stdout and result.stderr:
                # A client reads the two streams concurrently: give the earlier steps' output a
                # head start, so a combined log ends with the failed step's own message, as on a
                # real server where it is written last.
                await process.stdout.drain()
                await asyncio.sleep(0.05)
            process.stderr.write(result.stderr)
            process.exit(result.status)
        except (asyncssh.Error, OSError, BrokenPipeError):
            log.debug("ssh client of %s left before the command ended", self.address)
