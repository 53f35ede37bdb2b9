"""The sandbox against the Go clients inside the real Pulumi providers.

pulumi-resource-hcloud 1.39.1 is built on hcloud-go v2.44.0 and pulumi-resource-cloudflare
6.17.0 on cloudflare-go v6.10.0. sandbox/conformance/ drives both libraries through the calls
the providers make (server type, image by architecture, create and wait for actions, read,
update labels, list by selector, shutdown, delete; DNS record create with a raw JSON body, read,
overwrite, list by name, delete, 404 after). This runs even where the provider plugins are not
installed; it needs Go and the two modules (from the Go module proxy or the module cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures import REPO

SOURCE = REPO / "sandbox" / "conformance"


def conformance_binary() -> Path:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        pytest.fail("Go is not installed: the conformance client needs it (see the README)")
    digest = hashlib.sha256()
    for path in sorted(SOURCE.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clawdet" / "sandbox-conformance"
    binary = cache / digest.hexdigest()[:16] / "conformance"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        built = subprocess.run(
            [go, "build", "-o", str(binary), "."],
            cwd=SOURCE,
            capture_output=True,
            text=True,
            env={**os.environ, "GOFLAGS": "-mod=mod"},
            timeout=840,
        )
        if built.returncode != 0:
            if "dial tcp" in built.stderr or "proxy" in built.stderr.lower():
                pytest.fail(f"Go modules unavailable: {built.stderr.strip()[-300:]}")
            pytest.fail(f"building the conformance client failed:\n{built.stderr}")
    return binary


def test_provider_go_clients_work_against_the_sandbox(sandbox):
    binary = conformance_binary()
    result = subprocess.run(
        [
            str(binary),
            "-hcloud-endpoint",
            sandbox.hcloud_url,
            "-hcloud-token",
            sandbox.hcloud_token,
            "-cloudflare-url",
            sandbox.cloudflare_url,
            "-cloudflare-token",
            sandbox.cloudflare_token,
            "-zone-id",
            sandbox.zone_id,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["hcloud"] == "ok" and report["cloudflare"] == "ok"
    assert report["ipv4"].startswith("127.") and report["ipv6_network"].startswith("2001:db8:")
    assert report["zone_name"] == sandbox.zone_name

    calls = [(e.method, e.path) for e in sandbox.requests("hetzner")]
    assert ("GET", "/v1/actions") in calls  # the providers wait through GET /actions?id=...
    inventory = sandbox.inventory()
    assert inventory["servers"] == [] and inventory["firewalls"] == [] and inventory["dns_records"] == []
