"""Each fake server's SSH server, driven with asyncssh's client the way the platform's Pulumi
program drives a real one: a server created with the `hcloud` SDK from a bootstrap-only
cloud-config, its app layer uploaded over SFTP and put live with one `&&` command."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import asyncssh
import httpx
import pytest
from hcloud import Client
from hcloud.firewalls import FirewallResource, FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import Server

from programs import cloud_init, openclaw
from sandbox import Sandbox
from sandbox.cloud_init import parse_cloud_config
from sandbox.remote_shell import Result
from tests.fixtures.sandbox import start_sandbox

PLATFORM_KEY = asyncssh.generate_private_key("ssh-ed25519")
STRANGER_KEY = asyncssh.generate_private_key("ssh-ed25519")
DATA_MOUNT = "/mnt/openclaw-data"
INSTANCE_DIR = "/opt/openclaw"
MOUNT_OPTIONS = "discard,nofail,x-systemd.before=docker.service"


def public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


def bootstrap(device: str, key: asyncssh.SSHKey = PLATFORM_KEY) -> str:
    """The platform's bootstrap-only user_data: Docker, root's key, the volume mounted."""
    script = (
        f"mkdir -p {DATA_MOUNT}; for i in $(seq 600); do [ -e {device} ] && break; sleep 1; done; "
        f"mountpoint -q {DATA_MOUNT} || mount -o discard,defaults {device} {DATA_MOUNT}; "
        f"mountpoint -q {DATA_MOUNT}; install -d -o 1000 -g 1000 -m 0700 {DATA_MOUNT}/state; "
        f"install -d -m 0700 {INSTANCE_DIR}; systemctl enable --now docker.service"
    )
    return (
        "#cloud-config\ndisable_root: false\nssh_pwauth: false\n"
        f"ssh_authorized_keys:\n  - {public(key)}\n"
        "packages: [docker.io, docker-compose-v2]\n"
        f'mounts:\n  - ["{device}", {DATA_MOUNT}, ext4, "{MOUNT_OPTIONS}", "0", "0"]\n'
        f"runcmd:\n  - [sh, -ec, {json.dumps(script)}]\n"
    )


def platform_bootstrap(device: str) -> str:
    return cloud_init.render_user_data(data_device=device, ssh_public_key=public(PLATFORM_KEY))


def release_files(token: str) -> dict[str, str]:
    return {
        ".env": cloud_init.render_env_file(gateway_token=token, llm_api_key="ck_sandbox_key_1"),
        "openclaw.json": openclaw.render_config(
            fqdn="alice.clawdet.test", llm_base_url="http://127.0.0.1:9/v1", model="sandbox-small"
        ),
        "Caddyfile": cloud_init.render_caddyfile("alice.clawdet.test"),
        "docker-compose.yml": cloud_init.render_compose("free", "ghcr.io/openclaw/openclaw:sandbox"),
    }


class Instance:
    """One customer's server as the platform makes it: volume, server, attachment."""

    def __init__(
        self,
        sandbox: Sandbox,
        client: Client,
        name: str,
        user_data: Callable[[str], str] = bootstrap,
        attach: bool = True,
    ) -> None:
        self.sandbox = sandbox
        created = client.volumes.create(size=10, name=f"{name}-data", location=Location(name="fsn1"))
        created.action.wait_until_finished()
        self.volume = client.volumes.get_by_id(created.volume.id)
        response = client.servers.create(
            name=name,
            server_type=ServerType(name="cx22"),
            image=Image(name="ubuntu-24.04"),
            location=Location(name="fsn1"),
            user_data=user_data(self.volume.linux_device),
        )
        response.action.wait_until_finished()
        self.server = client.servers.get_by_id(response.server.id)
        if attach:
            self.volume.attach(Server(id=self.server.id), automount=False).wait_until_finished()
        self.ip = self.server.public_net.ipv4.ip
        self.host_key = sandbox.wait_for_ssh(self.server.id)
        self.folder = sandbox.state_path.parent / "servers" / str(self.server.id)
        self.volume_folder = sandbox.state_path.parent / "volumes" / str(self.volume.id)

    def connect(self, key: asyncssh.SSHKey | None = PLATFORM_KEY, **options) -> asyncssh.SSHClientConnection:
        options.setdefault("username", "root")
        return asyncssh.connect(
            self.ip,
            self.sandbox.ssh_port,
            client_keys=[key] if key else None,
            known_hosts=([asyncssh.import_public_key(self.host_key)], [], []),
            agent_path=None,
            config=None,
            connect_timeout=5,
            **options,
        )

    def run(self, command: str) -> Result:
        async def go() -> Result:
            async with self.connect() as conn:
                done = await conn.run(command, check=False, timeout=10)
                return Result(done.exit_status, done.stdout, done.stderr)

        return asyncio.run(go())

    def upload(self, files: dict[str, str]) -> None:
        async def go() -> None:
            async with self.connect() as conn, conn.start_sftp_client() as sftp:
                for path, content in files.items():
                    await sftp.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                    async with sftp.open(path, "w") as remote:
                        await remote.write(content)

        asyncio.run(go())

    def deploy(self, token: str, release: str) -> Result:
        directory = f"{INSTANCE_DIR}/release-{release}"
        self.upload({f"{directory}/{name}": content for name, content in release_files(token).items()})
        return self.run(cloud_init.deploy_command(directory, self.volume.linux_device))

    def status(self, token: str) -> int:
        url = f"http://{self.ip}:{self.sandbox.gateway_port}/api/status"
        return httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=2).status_code


def banner(instance: Instance) -> bytes:
    """What the server says first on a new TCP connection (b"" when it closes it at once)."""
    try:
        with socket.create_connection((instance.ip, instance.sandbox.ssh_port), timeout=2) as raw:
            return raw.recv(64)
    except ConnectionResetError:  # on loopback the reset may beat connect() itself
        return b""


def refused(instance: Instance) -> bool:
    async def go() -> None:
        async with instance.connect() as conn:
            await conn.run("true", timeout=5)

    try:
        asyncio.run(go())
    except (OSError, asyncssh.Error):
        return True
    return False


def test_root_logs_in_with_the_keys_cloud_init_gave_it_and_nothing_else(sandbox, hcloud_client):
    instance = Instance(sandbox, hcloud_client, "claw-login")
    assert instance.host_key.startswith("ssh-ed25519 ")
    [listed] = sandbox.inventory()["servers"]
    assert listed["ssh"] == {"port": sandbox.ssh_port, "state": "listening", "host_key": instance.host_key}
    assert listed["boot"] == "done" and listed["gateway"]["state"] == "down"  # bootstrap only: no app
    assert sandbox.describe()["ssh_port"] == sandbox.ssh_port == 2222
    assert instance.run("echo hello && cat /etc/ssh/ssh_host_ed25519_key.pub") == Result(
        0, f"hello\n{instance.host_key}\n"
    )

    async def attempt(**options) -> None:
        async with instance.connect(**options) as conn:
            await conn.run("true")

    for options in (
        {"key": STRANGER_KEY},
        {"key": None, "password": "hunter2", "preferred_auth": "password,keyboard-interactive"},
        {"username": "ubuntu"},
    ):
        with pytest.raises(asyncssh.PermissionDenied):
            asyncio.run(attempt(**options))

    async def wrong_host_key() -> None:
        async with asyncssh.connect(
            instance.ip,
            sandbox.ssh_port,
            username="root",
            client_keys=[PLATFORM_KEY],
            known_hosts=([STRANGER_KEY.convert_to_public()], [], []),
            agent_path=None,
            config=None,
        ):
            pass

    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        asyncio.run(wrong_host_key())

    async def environment_request() -> bool:
        async with instance.connect() as conn:
            channel, _session = await conn.create_session(asyncssh.SSHClientSession)
            # What Go's session.Setenv sends (asyncssh's own client does not wait for the answer).
            accepted = await channel._make_request(
                b"env", asyncssh.packet.String("A"), asyncssh.packet.String("b")
            )
            channel.close()
            return accepted

    assert asyncio.run(environment_request()) is False  # as OpenSSH without AcceptEnv


def test_the_hetzner_ssh_keys_of_the_server_let_root_in_too(sandbox, hcloud_client):
    hetzner_key = hcloud_client.ssh_keys.create(name="operator", public_key=public(STRANGER_KEY))
    response = hcloud_client.servers.create(
        name="claw-hetzner-key",
        server_type=ServerType(name="cx22"),
        image=Image(name="ubuntu-24.04"),
        user_data="#cloud-config\ndisable_root: false\n",
        ssh_keys=[hetzner_key],
    )
    response.action.wait_until_finished()
    host_key = sandbox.wait_for_ssh(response.server.id)
    hcloud_client.ssh_keys.delete(hetzner_key)  # the server keeps what it was created with

    async def whoami(key: asyncssh.SSHKey) -> str:
        async with asyncssh.connect(
            response.server.public_net.ipv4.ip,
            sandbox.ssh_port,
            username="root",
            client_keys=[key],
            known_hosts=([asyncssh.import_public_key(host_key)], [], []),
            agent_path=None,
            config=None,
        ) as conn:
            return (await conn.run("echo root", check=True)).stdout

    assert asyncio.run(whoami(STRANGER_KEY)) == "root\n"
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(whoami(PLATFORM_KEY))


def test_sftp_writes_land_in_the_servers_folder_and_never_outside(sandbox, hcloud_client, tmp_path):
    instance = Instance(sandbox, hcloud_client, "claw-sftp")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not the server's")
    (instance.folder / "leak").symlink_to(outside, target_is_directory=True)
    state_dir = sandbox.state_path.parent
    listed = lambda: sorted(p.name for p in state_dir.iterdir() if not p.name.startswith("state.json"))
    before = listed()

    async def go() -> dict[str, object]:
        seen: dict[str, object] = {}
        async with instance.connect() as conn, conn.start_sftp_client() as sftp:
            await sftp.makedirs(f"{INSTANCE_DIR}/release-a", exist_ok=True)
            async with sftp.open(f"{INSTANCE_DIR}/release-a/.env", "w") as remote:
                await remote.write("A=1\n")
            async with sftp.open("../../../../escape.txt", "w") as remote:  # `..` stops at /
                await remote.write("stays in")
            async with sftp.open(f"{DATA_MOUNT}/state/on-volume.txt", "w") as remote:
                await remote.write("customer data")
            await sftp.symlink("/etc", "/etc-link")  # an absolute target is the server's /etc
            seen["listing"] = sorted(await sftp.listdir("/"))
            seen["mount"] = await sftp.realpath(DATA_MOUNT)
            for name, path in (("state", "/../../state.json"), ("leak", "/leak/secret.txt")):
                try:
                    async with sftp.open(path) as remote:
                        seen[name] = await remote.read()
                except asyncssh.SFTPError as exc:
                    seen[name] = type(exc).__name__
        return seen

    seen = asyncio.run(go())
    assert (instance.folder / "opt/openclaw/release-a/.env").read_text() == "A=1\n"
    assert (instance.folder / "escape.txt").read_text() == "stays in"
    assert (instance.volume_folder / "state/on-volume.txt").read_text() == "customer data"
    assert (instance.folder / "etc-link").resolve() == (instance.folder / "etc").resolve()
    assert seen["state"] == "SFTPNoSuchFile" and seen["leak"] == "SFTPPermissionDenied"
    assert seen["mount"] == DATA_MOUNT
    assert {"etc", "opt", "mnt", "escape.txt"} <= set(seen["listing"])
    assert listed() == before
    assert (outside / "secret.txt").read_text() == "not the server's"


def test_deploy_over_ssh_runs_the_gateway_from_the_uploaded_files_and_redeploys_in_place(
    sandbox, hcloud_client
):
    instance = Instance(sandbox, hcloud_client, "claw-deploy")
    assert sandbox.gateway_state(instance.server.id) == "down"

    result = instance.deploy("first-token", "0123abcd")
    assert result.status == 0, result.stderr
    assert "openclaw-openclaw-1" in result.stderr
    assert sandbox.gateway_state(instance.server.id) == "up"  # `up --detach` returns once it runs
    assert instance.status("first-token") == 200 and instance.status("wrong") == 401
    assert (instance.folder / "opt/openclaw/release-0123abcd").is_dir()  # kept: re-runnable
    assert oct((instance.folder / "opt/openclaw/.env").stat().st_mode & 0o777) == "0o600"
    (instance.volume_folder / "state/memory.md").write_text("pelican")

    again = instance.deploy("second-token", "4567ef01")
    assert again.status == 0, again.stderr
    assert instance.status("first-token") == 401 and instance.status("second-token") == 200
    assert (instance.volume_folder / "state/memory.md").read_text() == "pelican"

    unknown = instance.run("frobnicate --all")
    assert (unknown.status, unknown.stderr) == (127, "sh: 1: frobnicate: not found\n")
    assert instance.run("echo a | wc -l").status == 2
    ps = instance.run(f"docker compose --file {INSTANCE_DIR}/docker-compose.yml ps")
    assert "openclaw-openclaw-1" in ps.stdout and "running" in ps.stdout
    assert instance.run("docker ps").status == 1


def test_a_firewall_without_a_rule_for_ssh_drops_the_connection(sandbox, hcloud_client):
    instance = Instance(sandbox, hcloud_client, "claw-fw")
    assert banner(instance).startswith(b"SSH-2.0-")
    web_only = [FirewallRule(direction="in", protocol="tcp", port="443", source_ips=["0.0.0.0/0"])]
    firewall = hcloud_client.firewalls.create(name="claw-fw", rules=web_only).firewall
    hcloud_client.firewalls.apply_to_resources(
        firewall, [FirewallResource(type="server", server=instance.server)]
    )
    assert banner(instance) == b""  # closed before the SSH handshake
    assert refused(instance)

    elsewhere = FirewallRule(direction="in", protocol="tcp", port="22", source_ips=["10.0.0.0/8"])
    hcloud_client.firewalls.set_rules(firewall, [*web_only, elsewhere])
    assert refused(instance)

    from_here = FirewallRule(direction="in", protocol="tcp", port="22", source_ips=["127.0.0.0/8"])
    hcloud_client.firewalls.set_rules(firewall, [*web_only, from_here])
    assert instance.run("true").status == 0


def test_power_cycle_reboot_and_sandbox_restart_bring_the_project_back(tmp_path):
    state = tmp_path / "sandbox" / "state.json"
    box = start_sandbox(state)
    try:
        client = Client(token=box.hcloud_token, api_endpoint=box.hcloud_url, poll_interval=0.05)
        instance = Instance(box, client, "claw-cycle")
        assert instance.deploy("cycle-token", "aa").status == 0

        client.servers.power_off(instance.server).wait_until_finished()
        assert refused(instance)
        assert box.ssh_state(instance.server.id)["ssh"]["state"] == "down"
        client.servers.power_on(instance.server).wait_until_finished()
        assert box.wait_for_ssh(instance.server.id) == instance.host_key  # the same server
        box.wait_for_gateway(instance.server.id, timeout=5)  # restart: unless-stopped
        assert instance.status("cycle-token") == 200

        compose = f"docker compose --file {INSTANCE_DIR}/docker-compose.yml"
        assert instance.run(f"{compose} stop").status == 0
        assert box.gateway_state(instance.server.id) == "down"
        client.servers.reboot(instance.server).wait_until_finished()
        box.wait_for_ssh(instance.server.id)
        assert box.ssh_state(instance.server.id)["boot"] == "done"
        assert box.gateway_state(instance.server.id) == "down"  # stopped stays stopped
        assert instance.run(f"{compose} restart").status == 0
        assert instance.status("cycle-token") == 200
    finally:
        box.stop()

    box = start_sandbox(state, server_network=box.server_network)
    try:
        box.wait_for_gateway(instance.server.id, timeout=5)
        instance.sandbox = box
        assert instance.status("cycle-token") == 200
        assert box.wait_for_ssh(instance.server.id) == instance.host_key
        assert instance.run(f"{compose} down").status == 0
        assert box.gateway_state(instance.server.id) == "down"
        saved = box.inventory()["servers"][0]
        assert saved["compose_project"] is None
    finally:
        box.stop()


def test_a_rebuild_is_a_new_system_on_the_same_volume(sandbox, hcloud_client):
    instance = Instance(sandbox, hcloud_client, "claw-rebuild")
    assert instance.deploy("before", "ee").status == 0
    (instance.volume_folder / "state/kept.md").write_text("kept")
    response = httpx.post(
        f"{sandbox.hcloud_url}/servers/{instance.server.id}/actions/rebuild",
        headers={"Authorization": f"Bearer {sandbox.hcloud_token}"},
        json={"image": "ubuntu-24.04"},
    )
    assert response.status_code == 201
    hcloud_client.actions.get_by_id(response.json()["action"]["id"]).wait_until_finished()
    new_host_key = sandbox.wait_for_ssh(instance.server.id)
    assert new_host_key != instance.host_key  # a new install makes new host keys
    instance.host_key = new_host_key
    assert instance.run(f"test -e {INSTANCE_DIR}/docker-compose.yml").status == 1
    assert sandbox.gateway_state(instance.server.id) == "down"
    assert instance.run(f"cat {DATA_MOUNT}/state/kept.md") == Result(0, "kept")


def test_without_its_volume_the_boot_fails_and_nothing_starts(tmp_path):
    box = start_sandbox(tmp_path / "state.json", device_wait=0.3)
    try:
        client = Client(token=box.hcloud_token, api_endpoint=box.hcloud_url, poll_interval=0.05)
        instance = Instance(box, client, "claw-no-volume", attach=False)  # it never gets attached
        assert instance.run("cloud-init status --wait") == Result(1, "status: error\n")

        deploy = instance.deploy("never", "bb")
        assert deploy.status == 1 and deploy.stdout == "status: error\n"
        up = instance.run(f"docker compose --file {INSTANCE_DIR}/release-bb/docker-compose.yml up -d")
        assert up.status == 1
        assert up.stderr == (
            'Error response from daemon: invalid mount config for type "bind": '
            f"bind source path does not exist: {DATA_MOUNT}/state\n"
        )
        assert box.gateway_state(instance.server.id) == "failed"
    finally:
        box.stop()


@pytest.mark.parametrize("render", [bootstrap, platform_bootstrap])
def test_the_bootstrap_user_data_is_read_as_cloud_init_would(render):
    """This file's bootstrap() and the platform's own: a mount, root's key, runcmd's folders."""
    device = "/dev/disk/by-id/scsi-0HC_Volume_7"
    cloud = parse_cloud_config(render(device))
    assert cloud.mounts == ((device, DATA_MOUNT),)
    assert cloud.authorized_keys == (public(PLATFORM_KEY),)
    assert cloud.runcmd_folders == (DATA_MOUNT, f"{DATA_MOUNT}/state", INSTANCE_DIR)
    assert not cloud.starts_gateway and cloud.runcmd_compose_file is None


def test_the_platforms_own_release_goes_live_with_its_own_command(sandbox, hcloud_client):
    """programs/cloud_init.py's bootstrap, app files and deploy command, as the program sends them."""
    instance = Instance(sandbox, hcloud_client, "claw-own", user_data=platform_bootstrap)
    files = cloud_init.render_app_files(
        tier="free",
        fqdn="own.clawdet.test",
        openclaw_image="ghcr.io/openclaw/openclaw:sandbox",
        model="sandbox-small",
        llm_base_url="http://127.0.0.1:9/v1",
        gateway_token="own-token",
        llm_api_key="ck_sandbox_key_1",
    )
    release = f"{INSTANCE_DIR}/release-0123456789abcdef-0"
    instance.upload({f"{release}/{name}": content for name, content in files.items()})
    result = instance.run(cloud_init.deploy_command(release, instance.volume.linux_device))
    assert result.status == 0, result.stdout + result.stderr
    assert instance.status("own-token") == 200
