"""Faults and drift on demand, over the control API and in Python; the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import cloudflare
import httpx
import pytest
from hcloud import APIException
from hcloud.images import Image
from hcloud.server_types import ServerType

from tests.fixtures import REPO as ROOT
from tests.fixtures.sandbox import cloud_config, start_sandbox


def test_fail_next_n_calls_of_one_route_in_each_services_shape(sandbox, hcloud_client, cloudflare_client):
    rule = httpx.post(
        sandbox.control_url + "/faults",
        json={"service": "hetzner", "method": "POST", "path": "/v1/servers", "status": 500, "fail_next": 2},
    ).json()
    for _ in range(2):
        with pytest.raises(APIException) as failed:
            hcloud_client.servers.create(
                name="claw-f", server_type=ServerType(name="cx22"), image=Image(name="ubuntu-24.04")
            )
        assert failed.value.code == "server_error"
    assert hcloud_client.servers.get_all() == []  # GETs are not affected, nothing was created
    hcloud_client.servers.create(
        name="claw-f", server_type=ServerType(name="cx22"), image=Image(name="ubuntu-24.04")
    )
    rules = httpx.get(sandbox.control_url + "/faults").json()
    assert [(r["id"], r["failures"], r["fail_next"]) for r in rules] == [(rule["id"], 2, 0)]

    sandbox.faults.add(service="cloudflare", path="/client/v4/zones", status=429, retry_after=7, fail_next=1)
    with pytest.raises(cloudflare.RateLimitError) as limited:
        cloudflare_client.zones.list()
    assert limited.value.response.headers["Retry-After"] == "7"
    assert cloudflare_client.zones.list().result[0].id == sandbox.zone_id


def test_rate_429_on_hetzner_carries_retry_after(sandbox):
    sandbox.faults.add(service="hetzner", path="/v1/servers*", status=429, retry_after=3, fail_next=1)
    response = httpx.get(
        sandbox.hcloud_url + "/servers", headers={"Authorization": f"Bearer {sandbox.hcloud_token}"}
    )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_latency_and_seeded_error_rate(tmp_path):
    def run(seed: int) -> list[int]:
        box = start_sandbox(tmp_path / f"state-{seed}-{time.monotonic_ns()}.json", seed=seed)
        try:
            box.faults.add(service="llm", path="^/v1/models$", error_rate=0.5, status=502)
            headers = {"Authorization": f"Bearer {box.llm_key}"}
            return [httpx.get(box.llm_url + "/models", headers=headers).status_code for _ in range(20)]
        finally:
            box.stop()

    first, again, other = run(7), run(7), run(8)
    assert first == again  # same seed, same failures
    assert first != other
    assert 3 <= first.count(502) <= 17

    box = start_sandbox(tmp_path / "latency.json")
    try:
        box.faults.add(service="cloudflare", latency=0.3)
        started = time.monotonic()
        httpx.get(
            box.cloudflare_url + "/user/tokens/verify",
            headers={"Authorization": f"Bearer {box.cloudflare_token}"},
        )
        assert time.monotonic() - started >= 0.3
        box.faults.clear()
        started = time.monotonic()
        httpx.get(
            box.cloudflare_url + "/user/tokens/verify",
            headers={"Authorization": f"Bearer {box.cloudflare_token}"},
        )
        assert time.monotonic() - started < 0.3
    finally:
        box.stop()


def test_gateway_faults_make_one_instance_unhealthy(sandbox, hcloud_client):
    server = hcloud_client.servers.create(
        name="claw-sick",
        server_type=ServerType(name="cx22"),
        image=Image(name="ubuntu-24.04"),
        user_data=cloud_config("t"),
    ).server
    sandbox.wait_for_gateway(server.id, timeout=5)
    sandbox.faults.add(service=f"gateway:{server.id}", path="/healthz", status=500)
    assert httpx.get(f"http://{server.public_net.ipv4.ip}:18789/healthz").status_code == 500
    assert httpx.get(f"http://{server.public_net.ipv4.ip}:18789/readyz").status_code == 200


def test_drift_over_http_and_inventory(sandbox, hcloud_client, cloudflare_client):
    server = hcloud_client.servers.create(
        name="claw-drift",
        server_type=ServerType(name="cx22"),
        image=Image(name="ubuntu-24.04"),
        user_data=cloud_config("t"),
    ).server
    record = cloudflare_client.dns.records.create(
        zone_id=sandbox.zone_id,
        name="claw-drift",
        type="A",
        content=server.public_net.ipv4.ip,
        ttl=1,
        proxied=True,
    )
    sandbox.wait_for_gateway(server.id, timeout=5)

    changed = httpx.patch(
        f"{sandbox.control_url}/drift/dns_records/{record.id}", json={"content": "127.9.9.9"}
    )
    assert changed.status_code == 200
    assert (
        cloudflare_client.dns.records.get(dns_record_id=record.id, zone_id=sandbox.zone_id).content
        == "127.9.9.9"
    )

    assert httpx.post(f"{sandbox.control_url}/drift/servers/{server.id}/kill-gateway").status_code == 200
    inventory = httpx.get(sandbox.control_url + "/inventory").json()
    assert inventory["servers"][0]["status"] == "running"
    assert inventory["servers"][0]["gateway"]["state"] == "down"
    assert httpx.post(f"{sandbox.control_url}/drift/servers/{server.id}/delete").status_code == 200
    assert httpx.post(f"{sandbox.control_url}/drift/servers/{server.id}/delete").status_code == 404

    orphans = httpx.get(sandbox.control_url + "/inventory").json()
    assert orphans["servers"] == []
    assert [r["name"] for r in orphans["dns_records"]] == ["claw-drift.clawdet.test"]  # left behind
    hetzner_calls = [e for e in sandbox.requests("hetzner") if e.method == "POST"]
    assert [e.path for e in hetzner_calls] == ["/v1/servers"]


def test_control_api_validates_input(sandbox):
    assert httpx.post(sandbox.control_url + "/faults", json={"nonsense": 1}).status_code == 400
    assert httpx.post(sandbox.control_url + "/faults", json={"error_rate": 3}).status_code == 400
    assert httpx.post(sandbox.control_url + "/drift/servers/1/explode").status_code == 404
    assert httpx.get(sandbox.control_url + "/").json()["zone_id"] == sandbox.zone_id


def test_write_env_file_and_describe(sandbox, tmp_path):
    path = sandbox.write_env_file(tmp_path / "env" / "sandbox.json")
    described = json.loads(path.read_text())
    assert described == sandbox.describe()
    assert len(described["hcloud_token"]) == 64
    assert described["hcloud_url"].endswith("/v1") and described["cloudflare_url"].endswith("/client/v4")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sandbox.provider_env()["HCLOUD_ENDPOINT"] == sandbox.hcloud_url


def test_sandbox_refuses_non_loopback_hosts(tmp_path):
    from sandbox import Sandbox

    with pytest.raises(ValueError):
        Sandbox(tmp_path / "s.json", host="0.0.0.0")
    with pytest.raises(ValueError):
        start_sandbox(tmp_path / "s.json", server_network="10.0.0.0/24")


def test_cli_runs_until_sigterm_and_saves_state(tmp_path):
    state = tmp_path / "cli" / "state.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--state",
            str(state),
            "--boot-delay",
            "0.1",
            "--server-network",
            "127.203.0.0/16",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        description_path = state.with_name("sandbox.json")
        deadline = time.monotonic() + 20
        while not description_path.exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        description = json.loads(description_path.read_text())
        servers = httpx.get(
            description["hcloud_url"] + "/servers",
            headers={"Authorization": f"Bearer {description['hcloud_token']}"},
        )
        assert servers.status_code == 200
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "hcloud_url" in output and "state saved" in output
    assert json.loads(state.read_text())["secrets"]["hcloud_token"] == description["hcloud_token"]
