"""Reads what a fake server's gateway needs out of its ``#cloud-config`` user_data.

The gateway token (and optionally model, LLM base URL and key) travel in an env file that
``write_files`` puts on the server: a line ``OPENCLAW_GATEWAY_TOKEN=<token>``. Entries may be
``b64``/``base64``, ``gzip``/``gz`` or ``gz+b64`` encoded, as cloud-init allows.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import re
import shlex

import yaml

GATEWAY_KEYS = {
    "OPENCLAW_GATEWAY_TOKEN": "token",
    "OPENCLAW_MODEL": "model",
    "OPENCLAW_LLM_BASE_URL": "llm_base_url",
    "OPENCLAW_LLM_API_KEY": "llm_api_key",
}
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?(OPENCLAW_[A-Z_]+)\s*=\s*(.*?)\s*$")


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    token: str | None = None
    model: str | None = None
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    env_file_path: str | None = None


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


def _env_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        match = _ENV_LINE.match(line)
        if not match or match.group(1) not in GATEWAY_KEYS:
            continue
        raw_value = match.group(2)
        try:
            parts = shlex.split(raw_value, comments=False)
            value = parts[0] if parts else ""
        except ValueError:
            value = raw_value
        values[GATEWAY_KEYS[match.group(1)]] = value
    return values


def _decompress_user_data(user_data: str | bytes) -> str:
    raw = user_data.encode("utf-8") if isinstance(user_data, str) else user_data
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def parse_gateway_config(user_data: str | bytes | None) -> GatewayConfig:
    """Best effort: a malformed cloud-config yields a gateway without a token."""
    if not user_data:
        return GatewayConfig()
    text = _decompress_user_data(user_data)
    documents = []
    if text.lstrip().startswith("#cloud-config"):
        try:
            documents.append(yaml.safe_load(text))
        except yaml.YAMLError:
            pass
    for document in documents:
        if not isinstance(document, dict):
            continue
        for entry in document.get("write_files") or []:
            if not isinstance(entry, dict):
                continue
            try:
                content = decode_write_file(entry)
            except (ValueError, OSError):
                continue
            values = _env_values(content)
            if "token" in values:
                return GatewayConfig(env_file_path=entry.get("path"), **values)
    # Fallback for user_data that is not a cloud-config (a shell script, say).
    values = _env_values(text)
    return GatewayConfig(**values)
