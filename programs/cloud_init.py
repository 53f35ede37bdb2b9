"""Renders what runs on a server from the templates in cloud-init/: the bootstrap user_data
(fixed at creation) and the app layer (pushed over SSH, changed in place).

The cloud-config template is parsed before anything is filled in, and values go into the parsed
strings, so no value can change the YAML structure. The compose file and the Caddyfile are
plain `string.Template` text; every value that goes into them has been validated first.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from programs import openclaw, tiers

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "cloud-init"
INSTANCE_DIR = "/opt/openclaw"
ENV_FILE, OPENCLAW_CONFIG_FILE, COMPOSE_FILE, CADDYFILE = (
    ".env",
    "openclaw.json",
    "docker-compose.yml",
    "Caddyfile",
)
APP_FILES = (ENV_FILE, OPENCLAW_CONFIG_FILE, CADDYFILE, COMPOSE_FILE)  # the compose file goes live last
ENV_FILE_PATH = f"{INSTANCE_DIR}/{ENV_FILE}"
COMPOSE_FILE_PATH = f"{INSTANCE_DIR}/{COMPOSE_FILE}"
CADDYFILE_PATH = f"{INSTANCE_DIR}/{CADDYFILE}"
OPENCLAW_CONFIG_FILE_PATH = f"{INSTANCE_DIR}/{OPENCLAW_CONFIG_FILE}"
DATA_MOUNT = "/mnt/openclaw-data"  # the customer's volume; the gateway's state dir lives on it
STATE_ON_VOLUME = f"{DATA_MOUNT}/state"
# Where the gateway writes a backup for the platform to fetch: on the volume (not the container's
# tmpfs, which `docker compose cp` cannot read and which counts against its memory), outside the
# state it backs up, writable by the gateway's user only.
BACKUPS_ON_VOLUME = f"{DATA_MOUNT}/backups"
BACKUPS_IN_CONTAINER = "/backups"
GATEWAY_UID = 1000
DEVICE_WAIT_SECONDS = 600  # Hetzner attaches the volume a few seconds after the server boots
GATEWAY_PORT = openclaw.GATEWAY_PORT
USER_DATA_LIMIT = 32 * 1024  # bytes Hetzner accepts as user_data

# Defaults (clawdet:caddyImage, clawdet:browserImage): real servers need them pinned by digest.
CADDY_IMAGE = "caddy:2.11.4-alpine"
BROWSER_IMAGE = "chromedp/headless-shell:148.0.7778.97"

# docker compose reads the env file too: no whitespace, quotes, '$' (interpolation) or '#'.
_ENV_VALUE = re.compile(r"[A-Za-z0-9._~+/=:%?&@!*,;-]+")


def render_env_file(*, gateway_token: str, llm_api_key: str) -> str:
    """The instance's .env: its two credentials and nothing else. OpenClaw reads the token as
    OPENCLAW_GATEWAY_TOKEN and the provider key through `${CLAWDET_LLM_API_KEY}` in its config."""
    variables = {openclaw.TOKEN_VARIABLE: gateway_token, openclaw.LLM_KEY_VARIABLE: llm_api_key}
    for name, value in variables.items():
        if not isinstance(value, str) or not _ENV_VALUE.fullmatch(value):
            raise ValueError(f"{name} has characters an env file cannot hold (value not shown)")
    return "".join(f"{name}={value}\n" for name, value in variables.items())


def render_compose(
    tier: str, openclaw_image: str, caddy_image: str = CADDY_IMAGE, browser_image: str = BROWSER_IMAGE
) -> str:
    """One template for every tier: the limits come from programs/tiers.py and only the
    enterprise tier keeps the browser sidecar."""
    limits = tiers.TIERS[tier]
    browser = limits.browser or tiers.ContainerLimits("0", "0M")
    values = {
        "openclaw_image": openclaw_image,
        "caddy_image": caddy_image,
        "browser_image": browser_image,
        "gateway_port": GATEWAY_PORT,
        "state_dir": openclaw.STATE_DIR,
        "state_on_volume": STATE_ON_VOLUME,
        "backups_on_volume": BACKUPS_ON_VOLUME,
        "backups_in_container": BACKUPS_IN_CONTAINER,
        "config_path": openclaw.CONFIG_PATH,
        "edge_network": openclaw.PROXY_NETWORK,
        "dynamic_range": openclaw.DYNAMIC_RANGE,
        "gateway_address": openclaw.GATEWAY_ADDRESS,
        "caddy_address": openclaw.CADDY_ADDRESS,
        "gateway_heap_mb": limits.gateway.heap_mb,
    }
    for role, container in (("gateway", limits.gateway), ("proxy", limits.proxy), ("browser", browser)):
        values |= {f"{role}_cpus": container.cpus, f"{role}_memory": container.memory}
        values[f"{role}_pids"] = container.pids
    compose = yaml.safe_load(_fill("compose.yaml", values))
    if not limits.browser:
        del compose["services"]["browser"]
        compose["services"]["openclaw"].pop("depends_on")
    text = yaml.dump(compose, Dumper=_BlockStyleDumper, sort_keys=False, width=1000)
    if "$" in text:
        raise ValueError("compose.yaml would leave a '$' for compose to interpolate")
    return text


def render_caddyfile(fqdn: str) -> str:
    return _fill("Caddyfile", {"fqdn": fqdn})


SOFTWARE_KEYS = ("package_update", "packages")  # what a golden snapshot already has done


def render_user_data(
    *, data_device: str, ssh_public_key: str, software_preinstalled: bool = False, pulls: Sequence[str] = ()
) -> str:
    """The server's #cloud-config: the bootstrap only (Docker, root's SSH key, the customer's
    volume mounted at DATA_MOUNT). `data_device` is the volume's linux_device. On a golden
    snapshot (`software_preinstalled`) Docker is there already: no package index, no installs."""
    if not re.fullmatch(r"/dev/disk/by-id/[A-Za-z0-9_.-]+", data_device):
        raise ValueError(f"{data_device!r} is not a /dev/disk/by-id/ device path")
    if not re.fullmatch(r"ssh-ed25519 [A-Za-z0-9+/=]+( [A-Za-z0-9@._-]+)?", ssh_public_key):
        raise ValueError("the platform's SSH public key is not an ssh-ed25519 key in authorized_keys form")
    values = {
        "ssh_public_key": ssh_public_key,
        "data_device": data_device,
        "data_mount": DATA_MOUNT,
        "state_on_volume": STATE_ON_VOLUME,
        "instance_dir": INSTANCE_DIR,
        "device_wait": str(DEVICE_WAIT_SECONDS),
    }
    template = yaml.safe_load((TEMPLATE_DIR / "cloud-config.yaml").read_text())
    if software_preinstalled:
        template = {key: value for key, value in template.items() if key not in SOFTWARE_KEYS}
    cloud_config = _fill_strings(template, values)
    cloud_config["runcmd"] += _pull_commands(pulls)
    return _dump_cloud_config(cloud_config)


def render_golden_user_data(*, ssh_public_key: str, images: Sequence[str]) -> str:
    """A golden snapshot's builder: the bootstrap's software (Docker from the archive, root's
    platform key) and the pinned container `images` pulled; no volume, no instance folders."""
    if not re.fullmatch(r"ssh-ed25519 [A-Za-z0-9+/=]+( [A-Za-z0-9@._-]+)?", ssh_public_key):
        raise ValueError("the platform's SSH public key is not an ssh-ed25519 key in authorized_keys form")
    if not images or not all(_IMAGE_REFERENCE.fullmatch(image) for image in images):
        raise ValueError(f"{list(images)!r}: the golden image needs pinned container image references")
    template = yaml.safe_load((TEMPLATE_DIR / "cloud-config.yaml").read_text())
    kept = {key: value for key, value in template.items() if key not in ("mounts", "runcmd")}
    kept["runcmd"] = [["systemctl", "enable", "--now", "docker.service"], *_pull_commands(images)]
    return _dump_cloud_config(_fill_strings(kept, {"ssh_public_key": ssh_public_key}))


def _pull_commands(images: Sequence[str]) -> list[list[str]]:
    """runcmd entries that pull these pinned images (a golden image's builder, a warm-pool server)."""
    if not all(_IMAGE_REFERENCE.fullmatch(image) for image in images):
        raise ValueError(f"{list(images)!r}: only pinned container image references are pulled")
    return [["docker", "pull", "--quiet", image] for image in images]


_IMAGE_REFERENCE = re.compile(r"[a-z0-9][a-z0-9./_-]*(:[A-Za-z0-9._-]+)?(@sha256:[0-9a-f]{64})?")


def _dump_cloud_config(cloud_config: dict[str, Any]) -> str:
    body = yaml.dump(cloud_config, Dumper=_BlockStyleDumper, sort_keys=False, width=1000)
    user_data = "#cloud-config\n" + body
    if len(user_data.encode()) > USER_DATA_LIMIT:
        raise ValueError(f"user_data is {len(user_data.encode())} bytes; Hetzner accepts {USER_DATA_LIMIT}")
    return user_data


def render_app_files(
    *,
    tier: str,
    fqdn: str,
    openclaw_image: str,
    caddy_image: str = CADDY_IMAGE,
    browser_image: str = BROWSER_IMAGE,
    model: str,
    llm_base_url: str,
    gateway_token: str,
    llm_api_key: str,
) -> dict[str, str]:
    """The app layer the platform pushes to INSTANCE_DIR: file name -> content."""
    return {
        ENV_FILE: render_env_file(gateway_token=gateway_token, llm_api_key=llm_api_key),
        OPENCLAW_CONFIG_FILE: openclaw.render_config(fqdn=fqdn, llm_base_url=llm_base_url, model=model),
        COMPOSE_FILE: render_compose(tier, openclaw_image, caddy_image, browser_image),
        CADDYFILE: render_caddyfile(fqdn),
    }


def config_hash(files: dict[str, str]) -> str:
    """Names what is deployed: the same files always give the same hash (a high-entropy secret
    inside cannot be recovered from it)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{len(files[name])}\0{files[name]}".encode())
    return digest.hexdigest()[:16]


def release_dir(config: str, restarts: str) -> str:
    """Where a release is uploaded before it goes live; a new restart count is a new release of
    the same files, so the containers are recreated."""
    return f"{INSTANCE_DIR}/release-{config}-{restarts}"


def deploy_command(release: str, data_device: str) -> str:
    """Puts an uploaded release live: wait for the bootstrap, refuse without the customer's volume
    (and grow its file system to the volume's size, after a tier change), validate, then copy each
    file next to its live name and rename it into place (never a half-written file live) and
    recreate the containers. Plain `&&` steps: a failure stops it with that step's own error. The
    release folder stays as uploaded, so the same deploy can run again."""
    steps = [
        "cloud-init status --wait",
        f"mountpoint {DATA_MOUNT}",  # its "... is not a mountpoint" reads well in an error
        f"resize2fs {data_device}",
        f"install -d -m 0700 -o {GATEWAY_UID} -g {GATEWAY_UID} {BACKUPS_ON_VOLUME}",
        f"docker compose --file {release}/{COMPOSE_FILE} config --quiet",
    ]
    for name in APP_FILES:
        live = f"{INSTANCE_DIR}/{name}"
        mode = "600" if name == ENV_FILE else "644"
        steps += [f"install -m {mode} {release}/{name} {live}.new", f"mv -f {live}.new {live}"]
    steps.append(f"docker compose --file {COMPOSE_FILE_PATH} up --detach --force-recreate --remove-orphans")
    return " && ".join(steps)


def _fill(template_name: str, values: dict[str, object]) -> str:
    return string.Template((TEMPLATE_DIR / template_name).read_text()).substitute(values)


def _fill_strings(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _fill_strings(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill_strings(item, values) for item in node]
    if isinstance(node, str):
        return string.Template(node).substitute(values)
    return node


class _BlockStyleDumper(yaml.SafeDumper):
    """Writes multi-line strings (the embedded files) as readable `|` blocks, and shared values
    in full rather than as YAML aliases."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStyleDumper.add_representer(str, _represent_str)
