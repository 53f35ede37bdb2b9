"""The fake servers' shell (sandbox/remote_shell.py) on its own, without SSH: parsing, the
emulated programs against a folder, confinement, and docker compose's checks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from programs import cloud_init, openclaw
from sandbox import compose
from sandbox.remote_shell import RemoteShell, Result, ShellSyntaxError, parse
from sandbox.server_fs import ServerFS, unmount

DATA_MOUNT = "/mnt/openclaw-data"
RELEASE = "/opt/openclaw/release-0123abcd"
DEVICE = "/dev/disk/by-id/scsi-0HC_Volume_7"
DEPLOY = cloud_init.deploy_command(RELEASE, DEVICE)  # what the platform sends


class FakeHost:
    """A server folder with one volume mounted, a boot state, and compose calls recorded."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "server"
        self.volume = tmp_path / "volume"
        self.root.mkdir()
        self.volume.mkdir()
        (self.root / "mnt").mkdir()
        (self.root / "mnt/openclaw-data").symlink_to(self.volume, target_is_directory=True)
        self.mounts = {DATA_MOUNT: self.volume}
        self.status = "done"
        self.calls: list[tuple[str, str, bool]] = []

    def filesystem(self) -> ServerFS:
        return ServerFS(self.root, self.mounts)

    def boot_status(self) -> str:
        return self.status

    def attached_devices(self) -> set[str]:
        return {DEVICE} if self.mounts else set()

    async def wait_for_boot(self) -> str:
        return self.status

    async def compose_up(self, project: compose.Project, force_recreate: bool) -> list[str]:
        self.calls.append(("up", project.path, force_recreate))
        return [f"Container {project.container_name('openclaw')}  Started"]

    async def compose_restart(self, project: compose.Project) -> list[str]:
        self.calls.append(("restart", project.path, False))
        return []

    async def compose_stop(self, project: compose.Project) -> list[str]:
        self.calls.append(("stop", project.path, False))
        return []

    async def compose_down(self, project: compose.Project) -> list[str]:
        self.calls.append(("down", project.path, False))
        return []

    def compose_ps(self, project: compose.Project) -> list[tuple[str, str, str]]:
        return [(project.container_name("openclaw"), "openclaw", "running")]

    def write(self, path: str, content: str) -> Path:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        return target


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path)


def run(host: FakeHost, command: str) -> Result:
    return asyncio.run(RemoteShell(host).run(command))


def app_files(token: str = "tok-1") -> dict[str, str]:
    return {
        ".env": cloud_init.render_env_file(gateway_token=token, llm_api_key="ck_key_1"),
        "openclaw.json": openclaw.render_config(
            fqdn="alice.clawdet.test", llm_base_url="http://127.0.0.1:9/v1", model="m"
        ),
        "Caddyfile": cloud_init.render_caddyfile("alice.clawdet.test"),
        "docker-compose.yml": cloud_init.render_compose("free", "ghcr.io/openclaw/openclaw:sandbox"),
    }


# -- parsing ----------------------------------------------------------------------------------
def test_commands_are_split_on_and_and_only():
    assert parse("a b && c 'd e' \"f g\" h\\ i") == [["a", "b"], ["c", "d e", "f g", "h i"]]
    assert parse("echo '&&' && true") == [["echo", "&&"], ["true"]]
    assert parse("echo a&&echo b") == [["echo", "a"], ["echo", "b"]]
    assert parse("") == []


@pytest.mark.parametrize(
    "command",
    [
        "ls | wc",
        "true; false",
        "echo x > f",
        "false || true",
        "echo $(id)",
        "echo `id`",
        "echo $HOME",
        "(true)",
        "true &",
        "true &&",
        "&& true",
        "echo 'open",
        "true\nfalse",
        'echo "$x"',
    ],
)
def test_other_shell_syntax_is_refused_with_status_2(host, command):
    with pytest.raises(ShellSyntaxError):
        parse(command)
    result = run(host, command)
    assert result.status == 2 and result.stderr.startswith("sh: 1: ") and not result.stdout


def test_unknown_programs_are_not_found(host):
    result = run(host, "true && frobnicate --now && echo never")
    assert (result.status, result.stdout, result.stderr) == (127, "", "sh: 1: frobnicate: not found\n")


def test_the_first_failure_stops_the_list(host):
    result = run(host, "echo one && false && echo two")
    assert (result.status, result.stdout) == (1, "one\n")
    assert run(host, "echo -n a && echo b c").stdout == "ab c\n"


# -- files ------------------------------------------------------------------------------------
def test_mv_renames_and_replaces_atomically(host):
    host.write("/opt/app/new.env", "NEW=1\n")
    old = host.write("/opt/app/.env", "OLD=1\n")
    old_inode = old.stat().st_ino
    assert run(host, "mv -f /opt/app/new.env /opt/app/.env").status == 0
    assert old.read_text() == "NEW=1\n" and old.stat().st_ino != old_inode
    assert not (host.root / "opt/app/new.env").exists()

    host.write("/opt/app/x", "x")
    (host.root / "opt/dir").mkdir()
    assert run(host, "mv /opt/app/x /opt/dir").status == 0
    assert (host.root / "opt/dir/x").read_text() == "x"

    missing = run(host, "mv -f /opt/app/nothing /opt/app/y")
    assert (
        missing.status == 1
        and missing.stderr == "mv: cannot stat '/opt/app/nothing': No such file or directory\n"
    )


def test_chmod_mkdir_install_rmdir_test_cat(host):
    env = host.write("/opt/app/.env", "A=1\n")
    assert run(host, "chmod 600 /opt/app/.env").status == 0
    assert oct(env.stat().st_mode & 0o777) == "0o600"
    bad = run(host, "chmod u+x /opt/app/.env")
    assert bad.status == 1 and "invalid mode" in bad.stderr
    assert run(host, "chmod 644 /opt/app/none").status == 1

    assert run(host, "mkdir -p /srv/a/b && install -d -m 0700 -o 1000 -g 1000 /srv/c/d").status == 0
    assert (host.root / "srv/a/b").is_dir()
    assert oct((host.root / "srv/c/d").stat().st_mode & 0o777) == "0o700"
    assert run(host, "mkdir /srv/a").status == 1  # exists, and no -p

    assert run(host, "test -d /srv/a && test -f /opt/app/.env && test -e /srv").status == 0
    assert run(host, "test -f /srv/a").status == 1
    assert run(host, "cat /opt/app/.env").stdout == "A=1\n"
    assert run(host, "cat /nope").stderr == "cat: /nope: No such file or directory\n"

    not_empty = run(host, "rmdir /srv/a")
    assert not_empty.status == 1 and "Directory not empty" in not_empty.stderr
    assert run(host, "rmdir /srv/a/b && rmdir /srv/a").status == 0 and not (host.root / "srv/a").exists()


def test_paths_stay_inside_the_server_and_its_mounted_volume(host, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    (host.root / "escape").symlink_to(tmp_path)
    (host.root / "secret").symlink_to(outside)

    assert run(host, "cat ../../secret.txt").status == 1  # `..` stops at the server's /
    assert run(host, f"cat /../..{outside}").status == 1
    for command in ("cat /secret", "cat /escape/secret.txt", "mv /secret /stolen", "test -e /escape"):
        result = run(host, command)
        assert result.status == 1, command
        assert not result.stdout
    assert "Permission denied" in run(host, "cat /escape/secret.txt").stderr
    assert outside.read_text() == "not yours"

    assert run(host, f"mkdir -p {DATA_MOUNT}/state && echo ok").status == 0  # the volume is in
    assert (host.volume / "state").is_dir()


def test_mountpoint_cloud_init_status(host):
    assert run(host, f"mountpoint -q {DATA_MOUNT}").status == 0
    assert run(host, f"mountpoint {DATA_MOUNT}").stdout == f"{DATA_MOUNT} is a mountpoint\n"
    (host.root / "opt").mkdir()
    not_mounted = run(host, "mountpoint /opt")
    assert (not_mounted.status, not_mounted.stdout) == (32, "/opt is not a mountpoint\n")
    assert run(host, "mountpoint -q /opt") == Result(32)
    assert run(host, "mountpoint -q /nowhere").status == 1

    assert run(host, "cloud-init status --wait") == Result(0, "status: done\n")
    host.status = "error"
    assert run(host, "cloud-init status --wait && echo deployed") == Result(1, "status: error\n")


# -- docker compose ---------------------------------------------------------------------------
def test_the_platforms_deploy_command(host):
    for name, content in app_files().items():
        host.write(f"{RELEASE}/{name}", content)
    result = run(host, DEPLOY)
    assert result.status == 0, result.stderr
    assert host.calls == [("up", "/opt/openclaw/docker-compose.yml", True)]
    assert (host.root / RELEASE.lstrip("/")).is_dir()  # kept: the same deploy can run again
    assert run(host, DEPLOY).status == 0 and len(host.calls) == 2
    env = host.root / "opt/openclaw/.env"
    assert "OPENCLAW_GATEWAY_TOKEN=tok-1" in env.read_text() and oct(env.stat().st_mode & 0o777) == "0o600"

    host.mounts = {}  # the volume is gone: nothing else runs
    unmount(host.root, DATA_MOUNT)
    assert run(host, DEPLOY).status == 32 and len(host.calls) == 2


def compose_result(host: FakeHost, compose_text: str, *files: str) -> Result:
    host.write("/opt/p/docker-compose.yml", compose_text)
    for name in files:
        host.write(f"/opt/p/{name}", "A=1\n")
    return run(host, "docker compose --file /opt/p/docker-compose.yml config --quiet")


@pytest.mark.parametrize(
    ("compose_text", "message"),
    [
        ("services: [oops", "yaml: "),
        ("", "empty compose file"),
        ("services:\n  a:\n    command: x\n", 'service "a" has neither an image nor a build context'),
        ("services:\n  a:\n    image: x\n    env_file: [.env]\n", "env file /opt/p/.env not found"),
        ("services:\n  a:\n    image: x\n    volumes: [data:/d]\n", "refers to undefined volume data"),
        ("services:\n  a:\n    image: x\n    depends_on: [b]\n", 'depends on undefined service "b"'),
        ("services:\n  a:\n    image: x\n    networks: [edge]\n", "refers to undefined network edge"),
    ],
)
def test_compose_config_refuses_what_compose_refuses(host, compose_text, message):
    result = compose_result(host, compose_text)
    assert result.status == 1 and message in result.stderr


def test_compose_config_accepts_a_valid_project_and_prints_it(host):
    text = "name: demo\nservices:\n  a:\n    image: x\n    env_file: [.env]\n    volumes: [./f:/f:ro]\n"
    assert compose_result(host, text, ".env") == Result(0)
    printed = run(host, "docker compose -f /opt/p/docker-compose.yml config")
    assert printed.status == 0 and "/opt/p/.env" in printed.stdout and "name: demo" in printed.stdout
    assert run(host, "docker compose --file /opt/p/missing.yml config").stderr == (
        "open /opt/p/missing.yml: no such file or directory\n"
    )


def test_compose_commands_reach_the_host_and_other_docker_commands_fail(host):
    host.write("/opt/p/compose.yaml", "services:\n  openclaw:\n    image: x\n")
    prefix = "docker compose -f /opt/p/compose.yaml -p demo "
    assert run(host, prefix + "up -d").status == 0
    assert run(host, prefix + "restart && " + prefix + "stop && " + prefix + "down").status == 0
    assert [call[0] for call in host.calls] == ["up", "restart", "stop", "down"]
    assert "demo-openclaw-1" in run(host, prefix + "ps").stdout
    attached = run(host, prefix + "up")
    assert attached.status == 1 and "--detach" in attached.stderr
    assert run(host, prefix + "up -d --build").stderr == "unknown flag: --build\n"
    assert run(host, "docker compose up -d").stderr == "no configuration file provided: not found\n"
    for command in ("docker ps", "docker run alpine", "docker"):
        result = run(host, command)
        assert result.status == 1 and result.stderr.startswith("docker: ")


def test_compose_refuses_a_missing_bind_source_it_may_not_create(tmp_path):
    root = tmp_path / "server"
    fs = ServerFS(root)
    (root / "p").mkdir(parents=True)
    (root / "p/compose.yaml").write_text(
        "services:\n  openclaw:\n    image: x\n    volumes:\n"
        "      - {type: bind, source: /mnt/data/state, target: /s, bind: {create_host_path: false}}\n"
        "      - ./made:/m\n"
    )
    project = compose.load(fs, "/p/compose.yaml")
    missing = compose.missing_bind_source(fs, project, project.gateway)
    assert missing == 'invalid mount config for type "bind": bind source path does not exist: /mnt/data/state'
    os.makedirs(root / "mnt/data/state")
    assert compose.missing_bind_source(fs, project, project.gateway) is None
    assert (root / "p/made").is_dir()  # Docker makes a missing short-syntax source


def test_install_copies_a_file_with_its_mode_and_resize2fs_knows_only_attached_devices(host):
    host.write("/opt/a.txt", "hello")
    assert run(host, "install -m 600 /opt/a.txt /opt/b.txt").status == 0
    copied = host.root / "opt/b.txt"
    assert copied.read_text() == "hello" and oct(copied.stat().st_mode & 0o777) == "0o600"
    assert run(host, "install -m 644 /opt/missing /opt/c").status == 1
    assert run(host, "install -m 644 /opt/a.txt /../../etc/passwd").status in (0, 1)
    assert not (host.root.parent / "etc/passwd").exists()  # never outside the server
    assert run(host, f"resize2fs {DEVICE}").status == 0
    result = run(host, "resize2fs /dev/disk/by-id/scsi-0HC_Volume_99")
    assert result.status == 1 and "No such file or directory" in result.stderr
