"""The OpenClaw gateway as an instance runs it: the one version pin and the gateway's own config.

The config is written the way OpenClaw's shipped docs say (gateway/configuration-reference.md,
gateway/config-tools/custom-providers.md, cli/config.md "Externally managed config"):
`openclaw.json` with the platform's LLM proxy as an OpenAI-compatible provider, token auth, the
Control UI's origin and Caddy as the one trusted proxy. It holds no secret: the gateway token
comes from `OPENCLAW_GATEWAY_TOKEN` and the provider key from `${CLAWDET_LLM_API_KEY}` (OpenClaw
substitutes `${VAR}` in config strings), both in the instance's 0600 `.env`.

`openclaw config validate` checks the schema (the tests run it on every rendered config) but not
the origin, the proxy addresses or the token; `validate_config` checks those before anything
reaches a server.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

# One pin: the container image on servers and the npm package the sandbox runs.
OPENCLAW_VERSION = "2026.9.6"
IMAGE_REPOSITORY = "ghcr.io/openclaw/openclaw"
OPENCLAW_IMAGE = f"{IMAGE_REPOSITORY}:{OPENCLAW_VERSION}"

GATEWAY_PORT = 18789
PROVIDER_ID = "clawdet"  # the model provider's id in openclaw.json; models are "clawdet/<id>"
LLM_KEY_VARIABLE = "CLAWDET_LLM_API_KEY"
TOKEN_VARIABLE = "OPENCLAW_GATEWAY_TOKEN"

# Paths inside the gateway container (the image runs as node, uid 1000).
STATE_DIR = "/home/node/.openclaw"  # the customer's data: sessions, memory, workspace
CONFIG_PATH = "/home/node/.config/openclaw/openclaw.json"  # platform-managed, mounted read-only

# The compose network's fixed addresses: Caddy is the only peer whose X-Forwarded-For counts.
PROXY_NETWORK = "172.30.0.0/24"
DYNAMIC_RANGE = "172.30.0.128/25"  # addresses Docker hands out itself; the fixed ones are below
CADDY_ADDRESS = "172.30.0.2"
GATEWAY_ADDRESS = "172.30.0.3"

# Context and output sizes the gateway plans with; the proxy enforces the real limits.
CONTEXT_WINDOW = 128_000
MAX_OUTPUT_TOKENS = 8_192

_ORIGIN = re.compile(r"^https://[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")


def image_for(version: str) -> str:
    """A version ("2026.9.7") as the official image; a full image reference stays as it is."""
    return version if "/" in version or ":" in version or "@" in version else f"{IMAGE_REPOSITORY}:{version}"


def version_of(image: str | None) -> str | None:
    """The tag of a pinned image reference ("ghcr.io/openclaw/openclaw:2026.9.6" -> "2026.9.6")."""
    if not image:
        return None
    name, _, digest = image.partition("@")
    tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else None
    return tag or digest or None


def model_ref(model: str) -> str:
    """How the agent names the model: provider/id."""
    return f"{PROVIDER_ID}/{model}"


def gateway_config(*, fqdn: str, llm_base_url: str, model: str) -> dict[str, Any]:
    """The instance's `openclaw.json`, as a dict."""
    config = {
        "gateway": {
            "mode": "local",
            "bind": "lan",
            "port": GATEWAY_PORT,
            "auth": {"mode": "token"},  # the token itself: OPENCLAW_GATEWAY_TOKEN
            "controlUi": {"allowedOrigins": [f"https://{fqdn}"]},
            "trustedProxies": [CADDY_ADDRESS],
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "models": {
            "mode": "replace",  # the platform's proxy is the only provider
            "providers": {
                PROVIDER_ID: {
                    "baseUrl": llm_base_url,
                    "apiKey": "${" + LLM_KEY_VARIABLE + "}",
                    "api": "openai-completions",
                    "models": [
                        {
                            "id": model,
                            "name": model,
                            "input": ["text"],
                            "contextWindow": CONTEXT_WINDOW,
                            "maxTokens": MAX_OUTPUT_TOKENS,
                        }
                    ],
                }
            },
        },
        "agents": {"defaults": {"model": {"primary": model_ref(model)}}},
        "update": {"checkOnStart": False},  # versions change through the platform, not in place
    }
    problems = validate_config(config)
    if problems:
        raise ValueError("openclaw.json would be refused: " + "; ".join(problems))
    return config


def render_config(*, fqdn: str, llm_base_url: str, model: str) -> str:
    return json.dumps(gateway_config(fqdn=fqdn, llm_base_url=llm_base_url, model=model), indent=2) + "\n"


def validate_config(config: dict[str, Any]) -> list[str]:
    """What OpenClaw's schema check lets through but a hosted gateway must not have."""
    problems = []
    gateway = config.get("gateway", {})
    auth = gateway.get("auth", {})
    if auth.get("mode") != "token":
        problems.append("gateway.auth.mode must be token (a non-loopback bind needs auth)")
    if "token" in auth or "password" in auth:
        problems.append("no credential may be written into openclaw.json; use the .env file")
    origins = gateway.get("controlUi", {}).get("allowedOrigins", [])
    if not origins or any(not isinstance(o, str) or not _ORIGIN.fullmatch(o) for o in origins):
        problems.append("gateway.controlUi.allowedOrigins must be https://<fqdn> origins without a path")
    for proxy in gateway.get("trustedProxies", []):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            problems.append(f"gateway.trustedProxies entry {proxy!r} is not an IP address or CIDR")
    for provider in config.get("models", {}).get("providers", {}).values():
        key = provider.get("apiKey", "")
        if not re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*\}", key):
            problems.append("a provider apiKey must be an ${ENV_VAR} reference, never the key itself")
        if not str(provider.get("baseUrl", "")).startswith(("http://", "https://")):
            problems.append("a provider baseUrl must be an http(s) URL")
    return problems
