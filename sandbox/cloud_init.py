"""Reads a fake server's ``#cloud-config`` user_data the way the server would use it.

``write_files`` entries become the server's files (``b64``/``base64``, ``gzip``/``gz`` or
``gz+b64`` encoded, as cloud-init allows). From them, ``GatewayConfig`` is what OpenClaw itself
would read: the token from ``OPENCLAW_GATEWAY_TOKEN``, the model provider (base URL, key, model)
from ``openclaw.json`` with its ``${VAR}`` references resolved against the env file, and the
gateway service of the compose file (command, environment, mounts), which the real-gateway
runner starts from. A bare env file with ``OPENCLAW_GATEWAY_TOKEN`` (no compose file) is enough
for the fake gateway.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_REFERENCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
GATEWAY_SERVICE = "openclaw"


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
    mounts: tuple[tuple[str, str], ...] = ()  # cloud-init `mounts`: (device, mount point)
    disks: dict[str, Path] = dataclasses.field(default_factory=dict, repr=False)  # device -> data

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
        for name in _as_list(service.get("env_file")):
            path = str(PurePosixPath(self.compose_dir or "/") / str(name))
            env.update(env_values(self.files.get(path, "")))
        raw = service.get("environment") or {}
        if isinstance(raw, list):
            raw = dict(item.split("=", 1) for item in raw if "=" in item)
        env.update({str(k): str(v) for k, v in raw.items()})
        return env


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


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


def written_files(user_data: str | bytes | None) -> dict[str, str]:
    """The files cloud-init's `write_files` would write: absolute path -> content."""
    document = cloud_config(user_data)
    entries = document.get("write_files")
    files = {}
    for entry in entries or []:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            try:
                files[entry["path"]] = decode_write_file(entry)
            except (ValueError, OSError):
                continue
    return files


def _gateway_service(files: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    for path, content in files.items():
        if PurePosixPath(path).name not in ("docker-compose.yml", "docker-compose.yaml", "compose.yaml"):
            continue
        try:
            compose = yaml.safe_load(content)
        except yaml.YAMLError:
            return None, None
        service = ((compose or {}).get("services") or {}).get(GATEWAY_SERVICE)
        return (service if isinstance(service, dict) else None), str(PurePosixPath(path).parent)
    return None, None


def _dig(node: Any, *keys: str) -> Any:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def parse_gateway_config(user_data: str | bytes | None) -> GatewayConfig:
    """Best effort: a malformed cloud-config yields a gateway without a token."""
    files = written_files(user_data)
    if not files and user_data:  # not a cloud-config (a shell script, say): look for the token
        values = env_values(_decompress_user_data(user_data))
        return GatewayConfig(token=values.get("OPENCLAW_GATEWAY_TOKEN"))
    service, compose_dir = _gateway_service(files)
    env_path = next(
        (path for path, content in files.items() if "OPENCLAW_GATEWAY_TOKEN" in env_values(content)), None
    )
    config = GatewayConfig(
        files=files,
        service=service,
        compose_dir=compose_dir,
        env_file_path=env_path,
        mounts=mounts(cloud_config(user_data)),
    )
    env = config.environment() if service else env_values(files.get(env_path or "", ""))
    model = base_url = key = None
    openclaw_json = config.openclaw_json or {}
    providers = (openclaw_json.get("models") or {}).get("providers") or {}
    primary = _dig(openclaw_json, "agents", "defaults", "model", "primary")
    provider_id, _, model = str(primary or "").partition("/")
    provider = providers.get(provider_id) or {}
    if provider:
        base_url = resolve(provider.get("baseUrl"), env)
        key = resolve(provider.get("apiKey"), env)
    return dataclasses.replace(
        config,
        token=env.get("OPENCLAW_GATEWAY_TOKEN"),
        model=model or None,
        llm_base_url=base_url,
        llm_api_key=key,
    )
