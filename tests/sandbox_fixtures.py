"""Fixtures for tests that drive the sandbox: import the ones you use into the test module."""

from __future__ import annotations

import base64
import gzip
import itertools
import pathlib

import cloudflare
import hcloud
import pytest

from sandbox import Sandbox

# A block of loopback addresses per test module run, away from the default 127.10.0.0/16 that
# a developer's `clawdet sandbox` uses, so tests and a running sandbox never share a gateway.
_networks = itertools.count(0)


def next_test_network() -> str:
    return f"127.{77 + next(_networks) % 100}.0.0/16"


def start_sandbox(state_path: pathlib.Path, **options) -> Sandbox:
    options.setdefault("boot_delay", 0.1)
    options.setdefault("action_delay", 0.05)
    options.setdefault("server_network", next_test_network())
    return Sandbox(state_path, **options).start()


@pytest.fixture
def sandbox(tmp_path: pathlib.Path):
    box = start_sandbox(tmp_path / "sandbox" / "state.json")
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def hcloud_client(sandbox: Sandbox) -> hcloud.Client:
    return hcloud.Client(token=sandbox.hcloud_token, api_endpoint=sandbox.hcloud_url, poll_interval=0.05)


@pytest.fixture
def cloudflare_client(sandbox: Sandbox):
    client = cloudflare.Cloudflare(api_token=sandbox.cloudflare_token, base_url=sandbox.cloudflare_url,
                                   max_retries=0)
    yield client
    client.close()


def cloud_config(token: str, *, model: str = "sandbox-small", encoding: str | None = None) -> str:
    """A #cloud-config like the real one: the gateway env file in write_files."""
    env = f"OPENCLAW_GATEWAY_TOKEN={token}\nOPENCLAW_MODEL={model}\n"
    if encoding is None:
        body = "    content: |\n" + "".join(f"      {line}\n" for line in env.splitlines())
    else:
        raw = env.encode()
        if "gz" in encoding:
            raw = gzip.compress(raw)
        body = f"    encoding: {encoding}\n    content: {base64.b64encode(raw).decode()}\n"
    return ("#cloud-config\nwrite_files:\n  - path: /opt/openclaw/gateway.env\n    permissions: '0600'\n"
            + body + "runcmd:\n  - [systemctl, start, openclaw]\n")
