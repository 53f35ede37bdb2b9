"""Reads a fake server's ``#cloud-config`` user_data the way the server would use it, and builds
what its OpenClaw gateway reads from the server's files.

``CloudConfig`` is what cloud-init does at an instance's first boot: ``write_files`` (``b64``/
``base64``, ``gzip``/``gz`` or ``gz+b64`` encoded, as cloud-init allows), ``mounts``, root's
``ssh_authorized_keys``, and the effects of ``runcmd`` the sandbox reproduces: the folders it
creates (``install -d``, ``mkdir``) and whether it runs ``docker compose ... up`` (the old layout,
with the whole app in user_data). ``GatewayConfig`` is what OpenClaw itself would read from a
set of files: the token from ``OPENCLAW_GATEWAY_TOKEN``, the model provider (base URL, key,
model) from ``openclaw.json`` with its ``${VAR}`` references resolved against the env file, and
the gateway service of the compose file (command, environment, mounts), which the real-gateway
runner starts from. A bare env file with ``OPENCLAW_GATEWAY_TOKEN`` (no compose file) is enough
for the stand-in.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import gzip
import itertools
import json
import posixpath
import re
import shlex
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import yaml

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_REFERENCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
GATEWAY_SERVICE = "openclaw"
TOKEN_VARIABLE = "OPENCLAW_GATEWAY_TOKEN"
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
_COMMAND_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "\n"}


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    token: str | None = None
    model: str | None = None  # the provider's model id, as the upstream receives it
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    env_file_path: str | None = None
    files: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)  # path -> content
    service: dict[str, Any] | None = dataclasses.field(default=None, repr=False)  # compose service
    compose_dir: str | None = None

    @property
    def image(self) -> str | None:
        return (self.service or {}).get("image")

    @property
    def broken(self) -> bool:
        """The sandbox's bad release: an image whose tag ends in `-broken` starts a gateway that
        fails its health check, as a real one with a config it refuses would."""
        return bool(self.image) and self.image.partition("@")[0].rpartition(":")[2].endswith("-broken")

    @property
    def runnable(self) -> bool:
        """Has what the real gateway starts from: a compose service and its openclaw.json."""
        return self.service is not None and self.openclaw_json is not None

    @property
    def openclaw_json(self) -> dict[str, Any] | None:
        for path, content in self.files.items():
            if PurePosixPath(path).name == "openclaw.json":
                try:
                    return json.loads(content)
                except ValueError:
                    return None
        return None

    def environment(self) -> dict[str, str]:
        """The gateway container's environment: its env files, then `environment:`."""
        env: dict[str, str] = {}
        service = self.service or {}
        for name in env_file_names(service):
            path = posixpath.normpath(posixpath.join(self.compose_dir or "/", name))
            env.update(env_values(self.files.get(path, "")))
        raw = service.get("environment") or {}
        if isinstance(raw, list):
            raw = dict(item.split("=", 1) for item in raw if "=" in item)
        env.update({str(k): str(v) for k, v in raw.items()})
        return env


@dataclasses.dataclass(frozen=True)
class CloudConfig:
    files: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)  # write_files
    modes: dict[str, int] = dataclasses.field(default_factory=dict)  # write_files permissions
    mounts: tuple[tuple[str, str], ...] = ()  # (device, mount point)
    authorized_keys: tuple[str, ...] = ()  # root's, from the top-level ssh_authorized_keys
    disable_root: bool = False  # Hetzner's images let root in with a key
    runcmd_folders: tuple[str, ...] = ()
    runcmd_compose_file: str | None = None  # the old layout: runcmd runs `docker compose up`
    token_outside_cloud_config: str | None = None  # a shell-script user_data naming a token
    package_update: bool = False  # `package_update` or `package_upgrade`: apt-get update first
    packages: tuple[str, ...] = ()  # `packages` (names; a [name, version] entry by its name)
    runcmd_pulls: tuple[str, ...] = ()  # images runcmd pulls (`docker pull IMAGE`)

    @property
    def compose_file(self) -> str | None:
        return next((p for p in self.files if PurePosixPath(p).name in COMPOSE_FILE_NAMES), None)

    @property
    def bare_env_file(self) -> bool:
        """The sandbox's own shorthand: an env file with the token and no compose file."""
        return self.compose_file is None and any(TOKEN_VARIABLE in env_values(c) for c in self.files.values())

    @property
    def starts_gateway(self) -> bool:
        """Whether the first boot itself starts the gateway (every layout but the bootstrap)."""
        return bool(self.runcmd_compose_file or self.bare_env_file or self.token_outside_cloud_config)


def env_file_names(service: Mapping[str, Any]) -> list[str]:
    """A compose service's env_file entries, short or long syntax."""
    value = service.get("env_file")
    entries = value if isinstance(value, list) else [] if value is None else [value]
    return [str(e.get("path", "")) if isinstance(e, dict) else str(e) for e in entries]


def decode_write_file(entry: dict) -> str:
    content = entry.get("content", "")
    raw = content if isinstance(content, bytes) else str(content).encode("utf-8")
    encoding = str(entry.get("encoding") or "text/plain").lower()
    steps = encoding.replace("+", " ").split()
    if any(step in ("b64", "base64") for step in steps):
        raw = base64.b64decode(raw)
    if any(step in ("gz", "gzip") for step in steps):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def env_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        match = _ENV_LINE.match(line)
        if not match:
            continue
        try:
            parts = shlex.split(match.group(2), comments=False)
            values[match.group(1)] = parts[0] if parts else ""
        except ValueError:
            values[match.group(1)] = match.group(2)
    return values


def resolve(value: Any, env: dict[str, str]) -> Any:
    """OpenClaw's `${VAR}` substitution in config strings (a missing variable stays literal)."""
    if isinstance(value, str):
        return _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), value)
    return value


def _decompress_user_data(user_data: str | bytes) -> str:
    raw = user_data.encode("utf-8") if isinstance(user_data, str) else user_data
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def cloud_config(user_data: str | bytes | None) -> dict[str, Any]:
    """The parsed #cloud-config document ({} for anything else)."""
    if not user_data:
        return {}
    text = _decompress_user_data(user_data)
    if not text.lstrip().startswith("#cloud-config"):
        return {}
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return document if isinstance(document, dict) else {}


def mounts(document: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """cloud-init's `mounts`: [device, mount point, fstype, options, ...] entries."""
    found = []
    for entry in document.get("mounts") or []:
        if isinstance(entry, list) and len(entry) >= 2 and all(isinstance(x, str) for x in entry[:2]):
            found.append((entry[0], entry[1]))
    return tuple(found)


def _write_files(document: dict[str, Any]) -> tuple[dict[str, str], dict[str, int]]:
    files, modes = {}, {}
    for entry in document.get("write_files") or []:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            try:
                files[entry["path"]] = decode_write_file(entry)
            except (ValueError, OSError):
                continue
            try:
                modes[entry["path"]] = int(str(entry.get("permissions") or "0644"), 8)
            except ValueError:
                modes[entry["path"]] = 0o644
    return files, modes


def written_files(user_data: str | bytes | None) -> dict[str, str]:
    """The files cloud-init's `write_files` would write: absolute path -> content."""
    return _write_files(cloud_config(user_data))[0]


def _runcmd_scripts(document: dict[str, Any]) -> list[str]:
    """Each runcmd entry as shell text: a list runs as argv (`sh -c SCRIPT` is the script)."""
    scripts = []
    for entry in document.get("runcmd") or []:
        if isinstance(entry, str):
            scripts.append(entry)
        elif isinstance(entry, list) and all(isinstance(arg, str) for arg in entry):
            if len(entry) >= 3 and entry[0] in ("sh", "bash", "/bin/sh") and "c" in entry[1]:
                scripts.append(entry[2])
            else:
                scripts.append(shlex.join(entry))
    return scripts


def _simple_commands(script: str) -> list[list[str]]:
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token in _COMMAND_SEPARATORS or set(token) <= set("();<>|&"):
                commands.append([])
            else:
                commands[-1].append(token)
    except ValueError:
        pass
    return [command for command in commands if command]


def _operands(args: list[str], options_with_values: str) -> list[str]:
    operands, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-") and len(arg) > 1:
            skip = arg[-1] in options_with_values and len(arg) == 2
        elif "$" not in arg:
            operands.append(arg)
    return operands


def _runcmd_effects(
    document: dict[str, Any],
) -> tuple[tuple[str, ...], str | None, bool, tuple[str, ...]]:
    """Folders runcmd creates, the compose file it runs `up` on (or whether it does at all) and
    the images it pulls."""
    folders: list[str] = []
    pulls: list[str] = []
    compose_file, compose_up = None, False
    for script in _runcmd_scripts(document):
        for words in _simple_commands(script):
            if words[:2] == ["docker", "pull"] or words[:3] == ["docker", "image", "pull"]:
                pulls += _operands(words[words.index("pull") + 1 :], "")
            elif words[0] == "mkdir":
                folders += _operands(words[1:], "m")
            elif words[0] == "install" and ("-d" in words or "--directory" in words):
                folders += _operands(words[1:], "ogmt")
            elif words[:2] == ["docker", "compose"] and "up" in words:
                compose_up = True
                for flag, value in itertools.pairwise(words):
                    if flag in ("-f", "--file"):
                        compose_file = value
    return tuple(f for f in folders if f.startswith("/")), compose_file, compose_up, tuple(pulls)


def _packages(document: dict[str, Any]) -> tuple[str, ...]:
    names = []
    for entry in document.get("packages") or []:
        name = entry[0] if isinstance(entry, list) and entry else entry
        if isinstance(name, str):
            names.append(name)
    return tuple(names)


@functools.lru_cache(maxsize=1024)  # a boot reads it several times; the result is not changed
def parse_cloud_config(user_data: str | bytes | None) -> CloudConfig:
    """Best effort, as cloud-init: what it cannot read it leaves out."""
    document = cloud_config(user_data)
    if not document:
        token = env_values(_decompress_user_data(user_data)).get(TOKEN_VARIABLE) if user_data else None
        return CloudConfig(token_outside_cloud_config=token)
    files, modes = _write_files(document)
    keys = document.get("ssh_authorized_keys") or []
    folders, compose_file, compose_up, pulls = _runcmd_effects(document)
    config = CloudConfig(
        files=files,
        modes=modes,
        mounts=mounts(document),
        authorized_keys=tuple(k for k in keys if isinstance(k, str)) if isinstance(keys, list) else (),
        disable_root=document.get("disable_root") is True,
        runcmd_folders=folders,
        package_update=document.get("package_update") is True or document.get("package_upgrade") is True,
        packages=_packages(document),
        runcmd_pulls=pulls,
    )
    if compose_up:
        config = dataclasses.replace(config, runcmd_compose_file=compose_file or config.compose_file)
    return config


def _gateway_service(
    files: Mapping[str, str], compose_path: str | None
) -> tuple[dict[str, Any] | None, str | None]:
    if compose_path is None:
        compose_path = next((p for p in files if PurePosixPath(p).name in COMPOSE_FILE_NAMES), None)
    if compose_path is None or compose_path not in files:
        return None, None
    try:
        compose = yaml.safe_load(files[compose_path])
    except yaml.YAMLError:
        return None, None
    services = (compose or {}).get("services") if isinstance(compose, dict) else None
    service = (services or {}).get(GATEWAY_SERVICE) if isinstance(services, dict) else None
    return (service if isinstance(service, dict) else None), str(PurePosixPath(compose_path).parent)


def _dig(node: Any, *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def gateway_config(files: Mapping[str, str], compose_path: str | None = None) -> GatewayConfig:
    """What the gateway reads from these files (path -> content): the compose file (``compose_path``
    or the one named like a compose file), its env files and openclaw.json. Best effort: what is
    malformed is left out, and a gateway without a token is not ready."""
    service, compose_dir = _gateway_service(files, compose_path)
    env_path = next((path for path, content in files.items() if TOKEN_VARIABLE in env_values(content)), None)
    config = GatewayConfig(
        files=dict(files), service=service, compose_dir=compose_dir, env_file_path=env_path
    )
    env = config.environment() if service else env_values(files.get(env_path or "", ""))
    model = base_url = key = None
    openclaw_json = config.openclaw_json or {}
    providers = _dig(openclaw_json, "models", "providers") or {}
    primary = _dig(openclaw_json, "agents", "defaults", "model", "primary")
    provider_id, _, model = str(primary or "").partition("/")
    provider = providers.get(provider_id) if isinstance(providers, dict) else None
    if isinstance(provider, dict):
        base_url = resolve(provider.get("baseUrl"), env)
        key = resolve(provider.get("apiKey"), env)
    return dataclasses.replace(
        config,
        token=env.get(TOKEN_VARIABLE),
        model=model or None,
        llm_base_url=base_url,
        llm_api_key=key,
    )


def parse_gateway_config(user_data: str | bytes | None) -> GatewayConfig:
    """The gateway straight from user_data (what its first boot would give it)."""
    cloud = parse_cloud_config(user_data)
    if cloud.token_outside_cloud_config:
        return GatewayConfig(token=cloud.token_outside_cloud_config)
    return gateway_config(cloud.files, cloud.runcmd_compose_file)
