"""What runs inside each fake server: its boot (cloud-init), its SSH server and its containers.

A server that is powered on is up ``boot_delay`` later. At its first boot cloud-init writes the
cloud-config's ``write_files`` into its folder (once: a reboot does not write them again), the
server gets its host key and its SSH server listens. cloud-init then waits up to ``device_wait``
for the devices its ``mounts`` name (Hetzner attaches a volume seconds after boot), mounts them,
makes the folders its runcmd makes and, in the old layout where the whole app is in user_data,
runs ``docker compose up``; ``cloud-init status`` is ``done`` (or ``error`` when a device never
came). From then on the gateway is the compose project's gateway container: it runs while the
project is up (``docker compose up`` over SSH, or the old layout's runcmd) and comes back after a
power cycle, a reboot or a sandbox restart, always started from the files in the server's folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from . import compose, openclaw, server_fs
from .clock import Clock, SystemContents, Work, total
from .cloud_init import GATEWAY_SERVICE, CloudConfig, GatewayConfig, gateway_config, parse_cloud_config
from .container_exec import Container, copy
from .gateways import GatewayFleet
from .remote_shell import RemoteShell, Result
from .server_fs import ServerFS
from .ssh import HOST_KEY_PATH, SSHListener, host_key, public_key_line

if TYPE_CHECKING:
    from .hetzner import HetznerCloud

log = logging.getLogger(__name__)

SSH_PORT_ON_SERVER = 22  # what Hetzner firewall rules name; the sandbox serves it on ssh_port
BOOT_WAIT_MARGIN = 10.0  # seconds `cloud-init status --wait` waits beyond the device wait


class Machine:
    """One fake server's running system; every method runs on the sandbox loop."""

    def __init__(self, fleet: Machines, server_id: int) -> None:
        self.fleet = fleet
        self.server_id = server_id
        self.state = "off"  # off, booting, running (cloud-init), done, error
        self.booted = asyncio.Event()
        self.ssh: SSHListener | None = None
        self.ssh_error: str | None = None
        self.mounted: dict[str, str] = {}  # mount point -> device
        self.container_config: GatewayConfig | None = None
        self.public_host_key: str | None = None  # read from the disk once, made at the first boot
        self._generation = 0  # every power change starts a new one; late work of an old one stops
        self._boot_timer: asyncio.TimerHandle | None = None
        self._device_timer: asyncio.TimerHandle | None = None
        self._containers = asyncio.Lock()
        self._installing = False  # cloud-init's package stage (and runcmd's pulls) takes its time

    # -- the server record and its files ---------------------------------------------------
    @property
    def server(self) -> dict[str, Any] | None:
        return self.fleet.cloud.servers.servers.get(str(self.server_id))

    @property
    def root(self) -> Path:
        return self.fleet.gateways.server_dir(self.server_id)

    def cloud_config(self) -> CloudConfig:
        return parse_cloud_config((self.server or {}).get("user_data"))

    def filesystem(self) -> ServerFS:
        disks = self.fleet.cloud.volumes.device_dirs(self.server_id)
        mounts = {point: disks[device] for point, device in self.mounted.items() if device in disks}
        return ServerFS(self.root, mounts)

    def contents(self) -> SystemContents:
        """The packages and container images on the disk (from its image, then what it fetched)."""
        return SystemContents.of((self.server or {}).get("contents"))

    def _add_contents(self, packages: Any = (), images: Any = ()) -> None:
        self._mark(contents=self.contents().plus(packages, images).record())

    async def _spend(self, work: list[Work]) -> None:
        """Takes the clock's time for `work`, and keeps the steps (profile seconds) in the
        server's record (``work`` in the inventory)."""
        server = self.server
        if server is not None and work:
            server.setdefault("work", []).extend({"step": w.step, "seconds": w.seconds} for w in work)
            self.fleet.cloud.store.mark_dirty()
        await self.fleet.clock.sleep(total(work))

    def _mark(self, **fields: Any) -> None:
        server = self.server
        if server is not None:
            server.update(fields)
            self.fleet.cloud.store.mark_dirty()

    # -- power -----------------------------------------------------------------------------
    def power_on(self, delay: float) -> None:
        self.halt()
        self.state = "booting"
        generation = self._generation
        self._boot_timer = asyncio.get_running_loop().call_later(
            delay, lambda: self.fleet.spawn(self._boot(generation))
        )

    def halt(self) -> None:
        """Power off: nothing answers any more (SSH, gateway); the disk stays."""
        self._generation += 1
        for timer in (self._boot_timer, self._device_timer):
            if timer is not None:
                timer.cancel()
        self._boot_timer = self._device_timer = None
        if self.ssh is not None:
            self.ssh.close()
            self.fleet.spawn(self.ssh.stop())
            self.ssh = None
        self.fleet.gateways.stop_soon(self.server_id)
        self.state = "off"
        self.booted.set()  # wakes `cloud-init status --wait` (its connection is gone)
        self.booted = asyncio.Event()
        self.mounted = {}
        self.container_config = None
        self._installing = False

    async def _boot(self, generation: int) -> None:
        await self.fleet.disk_ready(self.server_id)
        server = self.server
        if server is None or generation != self._generation:
            return
        cloud = self.cloud_config()
        first_files = server.get("cloud_init") is None
        try:
            key = await asyncio.to_thread(self._prepare_disk, cloud if first_files else None)
        except OSError as exc:
            log.warning("server %s could not boot: %s", self.server_id, exc)
            self._give_up()
            return
        if generation != self._generation:
            return
        self.public_host_key = public_key_line(key)
        if first_files:
            self._mark(cloud_init="files")
        self.state = "running"
        listener = SSHListener(server["address"], self.fleet.ssh_port, key, self)
        try:
            await listener.start()
            self.ssh, self.ssh_error = listener, None
        except OSError as exc:
            self.ssh_error = str(exc)
            log.warning("ssh of server %s could not listen on %s: %s", self.server_id, server["address"], exc)
        if server.get("cloud_init") != "done" and not await self._fetch_first_boot_software(generation):
            return
        await self.continue_boot()

    async def _fetch_first_boot_software(self, generation: int) -> bool:
        """cloud-init's package stage and runcmd's pulls: as long as the clock says for what the
        disk does not hold yet. False when the server went down meanwhile."""
        cloud = self.cloud_config()
        work = self.fleet.clock.first_boot_work(
            package_update=cloud.package_update,
            packages=cloud.packages,
            pulls=cloud.runcmd_pulls,
            has=self.contents(),
        )
        self._installing = True
        try:
            await self._spend(work)
        finally:
            if generation == self._generation:
                self._installing = False
        if generation != self._generation or self.server is None:
            return False
        self._add_contents(cloud.packages, cloud.runcmd_pulls)
        return True

    def _prepare_disk(self, cloud: CloudConfig | None) -> asyncssh.SSHKey:
        self.root.mkdir(parents=True, exist_ok=True)
        if cloud is not None:
            write_files(self.root, cloud)
        return host_key(self.root)

    async def continue_boot(self) -> None:
        """cloud-init's runcmd, once every device its mounts name is attached."""
        server = self.server
        if server is None or self.state != "running" or self._installing:
            return
        cloud = self.cloud_config()
        disks = self.fleet.cloud.volumes.device_dirs(self.server_id)
        first_boot = server.get("cloud_init") != "done"
        if first_boot and any(device not in disks for device, _point in cloud.mounts):
            if self._device_timer is None:
                self._device_timer = asyncio.get_running_loop().call_later(
                    self.fleet.device_wait, self._give_up
                )
            return
        if self._device_timer is not None:
            self._device_timer.cancel()
            self._device_timer = None
        self._mount(cloud, disks)
        if first_boot:
            self._run_runcmd(cloud)
        self.state = "done"
        self.booted.set()
        await self.start_containers()

    def _give_up(self) -> None:
        """A device never came: runcmd fails (it ran once, as cloud-init's per-instance modules do)."""
        self._device_timer = None
        self._mount(self.cloud_config(), self.fleet.cloud.volumes.device_dirs(self.server_id))
        self._mark(cloud_init="done")
        self.state = "error"
        self.booted.set()

    def _mount(self, cloud: CloudConfig, disks: dict[str, Path]) -> None:
        for device, point in cloud.mounts:
            try:
                if device in disks and self.mounted.get(server_fs.normalize(point)) == device:
                    continue
                if device in disks:
                    server_fs.mount(self.root, point, disks[device])
                    self.mounted[server_fs.normalize(point)] = device
                elif self.mounted.pop(server_fs.normalize(point), None) is not None:
                    server_fs.unmount(self.root, point)
            except OSError as exc:
                log.warning("server %s could not mount %s at %s: %s", self.server_id, device, point, exc)

    def _run_runcmd(self, cloud: CloudConfig) -> None:
        fs = self.filesystem()
        for folder in cloud.runcmd_folders:
            try:
                fs.host(folder).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.warning("server %s: runcmd could not make %s: %s", self.server_id, folder, exc)
        project = None
        if cloud.runcmd_compose_file:
            project = {"file": cloud.runcmd_compose_file, "name": None, "running": True}
        elif cloud.bare_env_file or cloud.token_outside_cloud_config:
            project = {"file": None, "name": GATEWAY_SERVICE, "running": True}
        self._mark(cloud_init="done", compose_project=project)

    # -- volumes ---------------------------------------------------------------------------
    def volumes_changed(self) -> None:
        if self.state == "running":
            self.fleet.spawn(self.continue_boot())
            return
        if self.state not in ("done", "error"):
            return
        disks = self.fleet.cloud.volumes.device_dirs(self.server_id)
        lost = [point for point, device in self.mounted.items() if device not in disks]
        for point in lost:
            del self.mounted[point]
            server_fs.unmount(self.root, point)
        if lost:
            self.fleet.gateways.stop_soon(self.server_id)  # its disk went
        before = set(self.mounted)
        self._mount(self.cloud_config(), disks)
        if set(self.mounted) - before and self.fleet.gateways.status(self.server_id) != "up":
            self.fleet.spawn(self.start_containers())

    # -- containers ------------------------------------------------------------------------
    def expects_gateway(self) -> bool:
        server = self.server or {}
        if server.get("gateway_killed"):
            return False
        if server.get("cloud_init") != "done":
            return self.cloud_config().starts_gateway
        return bool((server.get("compose_project") or {}).get("running"))

    async def start_containers(self) -> None:
        """Docker's `restart: unless-stopped`: the project's gateway, from the files on disk."""
        async with self._containers:
            server = self.server
            project = (server or {}).get("compose_project")
            if self.state not in ("done", "error") or not project or not project.get("running"):
                return
            if server.get("gateway_killed"):
                return
            if project["file"] is None:
                config = gateway_config(read_back(self.filesystem(), self.cloud_config().files))
                await self._run_gateway(config)
                return
            try:
                loaded = compose.load(self.filesystem(), project["file"], project.get("name"))
                config = self._gateway_of(loaded)
            except compose.ComposeError as exc:
                self.fleet.gateways.fail(self.server_id, str(exc))
                return
            project["name"] = loaded.name
            if config is not None:
                await self._run_gateway(config)

    def _gateway_of(self, project: compose.Project) -> GatewayConfig | None:
        """The gateway container's config, or ComposeError when Docker would refuse to create it."""
        if project.gateway is None:
            return None
        fs = self.filesystem()
        missing = compose.missing_bind_source(fs, project, project.gateway)
        if missing:
            raise compose.ComposeError(f"Error response from daemon: {missing}")
        return gateway_config(compose.gateway_files(fs, project), project.path)

    async def _pull(self, project: compose.Project) -> None:
        """`docker compose up` pulls the images of its services that the disk does not hold."""
        images = [s["image"] for s in project.services.values() if isinstance(s.get("image"), str)]
        generation = self._generation
        await self._spend(self.fleet.clock.pull_work(images, self.contents()))
        if generation == self._generation:
            self._add_contents(images=images)

    async def _run_gateway(self, config: GatewayConfig, cold_start: bool = True) -> None:
        """Starts the gateway container; with ``cold_start`` it answers only after the clock's
        cold start (the command that started it returns at once, as `docker compose up -d`)."""
        server, generation = self.server, self._generation
        if server is None:
            return
        self.container_config = config
        if cold_start and self.fleet.clock.gateway_cold_start > 0:
            self.fleet.gateways.stop_soon(self.server_id)
            self.fleet.spawn(self._start_after_cold_start(config, generation))
            return
        await self.fleet.gateways.run(self.server_id, server["name"], server["address"], config)
        if generation != self._generation or self.server is None:  # powered off meanwhile
            self.fleet.gateways.stop_soon(self.server_id)

    async def _start_after_cold_start(self, config: GatewayConfig, generation: int) -> None:
        await self._spend([Work("gateway cold start", self.fleet.clock.gateway_cold_start)])
        async with self._containers:
            project = (self.server or {}).get("compose_project") or {}
            if generation != self._generation or self.container_config is not config:
                return  # powered off, or recreated or taken down meanwhile
            if project.get("running") and not (self.server or {}).get("gateway_killed"):
                await self._run_gateway(config, cold_start=False)

    def _recorded(self, project: compose.Project) -> dict[str, Any] | None:
        recorded = (self.server or {}).get("compose_project")
        if recorded and (recorded.get("name") or project.name) == project.name:
            return recorded
        return None

    # -- the remote shell's host (remote_shell.Host) ---------------------------------------
    def boot_status(self) -> str:
        return {"done": "done", "error": "error"}.get(self.state, "running")

    async def wait_for_boot(self) -> str:
        try:
            await asyncio.wait_for(self.booted.wait(), self.fleet.device_wait + BOOT_WAIT_MARGIN)
        except TimeoutError:
            pass
        return self.boot_status()

    async def compose_up(self, project: compose.Project, force_recreate: bool) -> list[str]:
        async with self._containers:
            container = project.container_name(GATEWAY_SERVICE)
            try:
                config = self._gateway_of(project)
            except compose.ComposeError as exc:
                self.fleet.gateways.fail(self.server_id, str(exc))
                raise
            await self._pull(project)
            self._mark(
                compose_project={"file": project.path, "name": project.name, "running": True},
                gateway_killed=False,
            )
            if config is None:
                self.fleet.gateways.stop_soon(self.server_id)
                return []
            running = self.fleet.gateways.config_of(self.server_id)
            if not force_recreate and running is not None and same_container(running, config):
                return [f"Container {container}  Running"]
            await self._run_gateway(config)
            return [
                f"Container {container}  {'Recreated' if running else 'Created'}",
                f"Container {container}  Started",
            ]

    async def compose_restart(self, project: compose.Project) -> list[str]:
        async with self._containers:
            recorded = self._recorded(project)
            if recorded is None:
                return []
            config = self.container_config
            if config is None:
                config = self._gateway_of(project)
                if config is None:
                    return []
            recorded["running"] = True
            self._mark(gateway_killed=False)
            container = project.container_name(GATEWAY_SERVICE)
            await self._run_gateway(config)
            return [f"Container {container}  Restarting", f"Container {container}  Started"]

    async def compose_stop(self, project: compose.Project) -> list[str]:
        async with self._containers:
            recorded = self._recorded(project)
            if recorded is None:
                return []
            recorded["running"] = False
            self._mark()
            self.fleet.gateways.stop_soon(self.server_id)
            await self.fleet.gateways.stopped(self.server_id)
            return [f"Container {project.container_name(GATEWAY_SERVICE)}  Stopped"]

    async def compose_down(self, project: compose.Project) -> list[str]:
        async with self._containers:
            if self._recorded(project) is None:
                return []
            self._mark(compose_project=None)
            self.fleet.gateways.stop_soon(self.server_id)
            self.container_config = None
            return [f"Container {project.container_name(GATEWAY_SERVICE)}  Removed"]

    def compose_ps(self, project: compose.Project) -> list[tuple[str, str, str]]:
        recorded = self._recorded(project)
        if recorded is None:
            return []
        state = self.fleet.gateways.status(self.server_id)
        shown = {"up": "running", "failed": "exited (1)"}.get(state, "exited (0)")
        return [(project.container_name(GATEWAY_SERVICE), GATEWAY_SERVICE, shown)]

    async def compose_exec(self, project: compose.Project, service: str, argv: list[str]) -> Result:
        recorded = self._recorded(project)
        if (
            service != GATEWAY_SERVICE
            or not recorded
            or not recorded.get("running")
            or not self.container_config
        ):
            return Result(1, stderr=f'service "{service}" is not running\n')
        return await self._container(self.container_config).run(argv)

    async def compose_run(
        self, project: compose.Project, service: str, argv: list[str], volumes: dict[str, str]
    ) -> Result:
        if service != GATEWAY_SERVICE:
            return Result(1, stderr=f"the sandbox runs one-off containers of {GATEWAY_SERVICE!r} only\n")
        try:
            config = self._gateway_of(project)
            fs = self.filesystem()
            extra = {target: fs.host(source) for source, target in volumes.items()}
        except (compose.ComposeError, OSError) as exc:
            return Result(1, stderr=f"{exc}\n")
        if config is None:
            return Result(1, stderr=f"no such service: {service}\n")
        return await self._container(config, extra).run(argv)

    async def compose_cp(self, project: compose.Project, source: str, target: str) -> Result:
        config = self.container_config if self._recorded(project) else None
        if config is None:
            return Result(1, stderr=f'service "{GATEWAY_SERVICE}" is not running\n')
        container, fs = self._container(config), self.filesystem()

        def side(path: str) -> Path:
            service, colon, inside = path.partition(":")
            if not colon:
                return fs.host(path, server_fs.HOME)
            if service != GATEWAY_SERVICE:
                raise FileNotFoundError(f"no container for service {service!r}")
            return container.host_path(inside)

        try:
            copy(side(source), side(target))
        except OSError as exc:
            return Result(1, stderr=f"Error response from daemon: {exc}\n")
        return Result(0)

    def _container(self, config: GatewayConfig, volumes: dict[str, Path] | None = None) -> Container:
        install = self.fleet.gateways.install or openclaw.find()
        return Container(install, self.root, config, volumes)

    # -- the SSH server's gate (ssh.Gate) --------------------------------------------------
    def admits(self, client_address: str) -> bool:
        server = self.server
        if server is None:
            return False
        firewalls = self.fleet.cloud.firewalls
        ports = {SSH_PORT_ON_SERVER, self.fleet.ssh_port}
        return any(firewalls.admits(server, "tcp", port, client_address) for port in ports)

    def root_keys(self) -> Iterable[str]:
        server = self.server
        cloud = self.cloud_config()
        if server is None or cloud.disable_root:
            return []
        return [*cloud.authorized_keys, *self.fleet.hetzner_keys(server)]

    def attached_devices(self) -> set[str]:
        return set(self.fleet.cloud.volumes.device_dirs(self.server_id))

    def shell(self) -> RemoteShell:
        return RemoteShell(self, self.fleet.cloud.faults, f"ssh:{self.server_id}")

    # -- inspection ------------------------------------------------------------------------
    def host_key(self) -> str | None:
        if self.public_host_key is None:
            try:
                self.public_host_key = (self.root / (HOST_KEY_PATH + ".pub")).read_text().strip() or None
            except OSError:
                return None
        return self.public_host_key

    def describe(self) -> dict[str, Any]:
        if self.ssh is not None:
            ssh_state = "listening"
        else:
            ssh_state = "failed" if self.ssh_error and self.state != "off" else "down"
        ssh: dict[str, Any] = {"port": self.fleet.ssh_port, "state": ssh_state, "host_key": self.host_key()}
        if ssh_state == "failed":
            ssh["error"] = self.ssh_error
        return {"boot": self.state, "ssh": ssh}


def write_files(root: Path, cloud: CloudConfig) -> None:
    """cloud-init's write_files, into the server's folder (never outside it)."""
    fs = ServerFS(root)
    for path, content in cloud.files.items():
        try:
            target = fs.host(path)
        except server_fs.OutsideServer:
            log.warning("write_files entry %s leaves the server's file system", path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.chmod(target, 0o600)
        target.write_text(content)
        os.chmod(target, cloud.modes.get(path, 0o644))


def read_back(fs: ServerFS, paths: Iterable[str]) -> dict[str, str]:
    """The current content of files (those that still exist)."""
    files = {}
    for path in paths:
        try:
            files[path] = fs.host(path).read_text(errors="replace")
        except OSError:
            continue
    return files


def same_container(running: GatewayConfig, wanted: GatewayConfig) -> bool:
    """Compose recreates a container when its service config or environment changed."""
    return running.service == wanted.service and running.environment() == wanted.environment()


class Machines:
    """Every fake server's system, keyed by server id."""

    def __init__(
        self,
        cloud: HetznerCloud,
        gateways: GatewayFleet,
        *,
        ssh_port: int,
        clock: Clock,
        device_wait: float,
    ) -> None:
        self.cloud = cloud
        self.gateways = gateways
        self.ssh_port = ssh_port
        self.clock = clock
        self.device_wait = device_wait
        self._machines: dict[int, Machine] = {}
        self._disk_work: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def machine(self, server_id: int) -> Machine:
        if server_id not in self._machines:
            self._machines[server_id] = Machine(self, server_id)
        return self._machines[server_id]

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def hetzner_keys(self, server: dict[str, Any]) -> list[str]:
        """The public keys of the Hetzner SSH keys the server was created with."""
        if "ssh_public_keys" in server:
            return list(server["ssh_public_keys"])
        keys = self.cloud.firewalls.ssh_keys
        return [
            keys[str(key_id)]["public_key"] for key_id in server.get("ssh_keys", []) if str(key_id) in keys
        ]

    async def disk_ready(self, server_id: int) -> None:
        work = self._disk_work.get(server_id)
        if work is not None:
            await work

    # -- what the Hetzner API does to servers ----------------------------------------------
    def power_on(self, server: dict[str, Any], delay: float | None = None) -> None:
        if server["status"] == "running":
            boot = self.clock.boot if delay is None else delay
            if boot:
                server.setdefault("work", []).append({"step": "boot", "seconds": boot})
            self.machine(server["id"]).power_on(self.clock.wall(boot))

    def power_off(self, server: dict[str, Any]) -> None:
        self.machine(server["id"]).halt()

    def reinstall(self, server: dict[str, Any]) -> None:
        """A rebuild: a new system on the server's disk (the volumes keep their data)."""
        machine = self.machine(server["id"])
        machine.halt()
        machine.public_host_key = None
        server["cloud_init"] = None
        server["compose_project"] = None
        self._wipe(server["id"])

    def forget(self, server: dict[str, Any]) -> None:
        """The server is deleted: it stops and its disk goes."""
        machine = self._machines.pop(server["id"], None)
        if machine is not None:
            machine.halt()
        self._wipe(server["id"])

    def _wipe(self, server_id: int) -> None:
        previous = self._disk_work.get(server_id)

        async def wipe() -> None:
            if previous is not None:
                await previous
            await self.gateways.forget(server_id)

        task = self.spawn(wipe())
        self._disk_work[server_id] = task

        def done(_task: asyncio.Task[None]) -> None:
            if self._disk_work.get(server_id) is task:
                del self._disk_work[server_id]

        task.add_done_callback(done)

    def volumes_changed(self, server: dict[str, Any]) -> None:
        self.machine(server["id"]).volumes_changed()

    def kill_gateway(self, server: dict[str, Any]) -> None:
        server["gateway_killed"] = True
        self.gateways.stop_soon(server["id"])

    def revive_gateway(self, server: dict[str, Any]) -> None:
        server["gateway_killed"] = False
        self.spawn(self.machine(server["id"]).start_containers())

    # -- inspection ------------------------------------------------------------------------
    def gateway_state(self, server_id: int) -> str:
        """The gateway fleet's word, and ``booting`` while the server boots towards a gateway."""
        state = self.gateways.status(server_id)
        machine = self._machines.get(server_id)
        if state == "down" and machine is not None and machine.state in ("booting", "running"):
            return "booting" if machine.expects_gateway() else state
        return state

    def describe(self, server_id: int) -> dict[str, Any]:
        if server_id not in self._machines and str(server_id) not in self.cloud.servers.servers:
            return Machine(self, server_id).describe()  # no such server: nothing to keep
        return self.machine(server_id).describe()

    async def stop_all(self) -> None:
        for machine in self._machines.values():
            machine.halt()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
