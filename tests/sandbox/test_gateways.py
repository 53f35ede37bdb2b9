"""Each fake server's gateway: its own 127.x address, token from cloud-init, power coupling,
drift, restarts of the sandbox, and many servers in one process."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hcloud import Client
from hcloud.firewalls import FirewallResource
from hcloud.images import Image
from hcloud.server_types import ServerType

from sandbox.cloud_init import parse_gateway_config
from tests.fixtures import eventually
from tests.fixtures.sandbox import cloud_config, start_sandbox


def gateway(ip: str, port: int = 18789) -> str:
    return f"http://{ip}:{port}"


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.ConnectError:
        return True
    return False


def new_server(client: Client, name: str, token: str, **extra):
    response = client.servers.create(
        name=name,
        server_type=ServerType(name="cx22"),
        image=Image(name="ubuntu-24.04"),
        user_data=cloud_config(token),
        **extra,
    )
    response.action.wait_until_finished()
    return client.servers.get_by_id(response.server.id)


def test_gateway_answers_on_the_servers_own_address_with_its_token(sandbox, hcloud_client):
    server = new_server(hcloud_client, "claw-gw", "secret-token-1")
    ip = server.public_net.ipv4.ip
    sandbox.wait_for_gateway(server.id)
    assert httpx.get(gateway(ip) + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gateway(ip) + "/readyz").status_code == 200
    assert httpx.get(gateway(ip) + "/api/status").status_code == 401
    assert (
        httpx.get(gateway(ip) + "/api/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    status = httpx.get(gateway(ip) + "/api/status", headers={"Authorization": "Bearer secret-token-1"})
    assert status.status_code == 200
    assert status.json()["server"] == {"id": server.id, "name": "claw-gw"}
    assert status.json()["model"] == "sandbox-small"
    # Not on the loopback address every other service uses:
    assert refused("http://127.0.0.1:18789/healthz") or ip != "127.0.0.1"

    other = new_server(hcloud_client, "claw-gw-2", "secret-token-2")
    other_ip = other.public_net.ipv4.ip
    assert other_ip != ip
    sandbox.wait_for_gateway(other.id)
    assert (
        httpx.get(
            gateway(other_ip) + "/api/status", headers={"Authorization": "Bearer secret-token-1"}
        ).status_code
        == 401
    )


def test_gateway_boots_only_after_boot_delay(tmp_path):
    box = start_sandbox(tmp_path / "state.json", boot_delay=0.6)
    try:
        client = Client(token=box.hcloud_token, api_endpoint=box.hcloud_url, poll_interval=0.05)
        server = new_server(client, "claw-slow", "t")
        ip = server.public_net.ipv4.ip
        assert server.status == "running"
        assert refused(gateway(ip) + "/healthz")
        box.wait_for_gateway(server.id, timeout=3)
        assert httpx.get(gateway(ip) + "/healthz").status_code == 200
    finally:
        box.stop()


def test_power_actions_stop_and_start_the_gateway(sandbox, hcloud_client):
    server = new_server(hcloud_client, "claw-power", "tok")
    url = gateway(server.public_net.ipv4.ip) + "/healthz"
    sandbox.wait_for_gateway(server.id)
    with httpx.Client() as keep_alive:  # an open connection is closed too
        assert keep_alive.get(url).status_code == 200
        hcloud_client.servers.power_off(server).wait_until_finished()
        eventually(lambda: refused(url))
        with pytest.raises(httpx.TransportError):
            keep_alive.get(url)
    hcloud_client.servers.power_on(server).wait_until_finished()
    sandbox.wait_for_gateway(server.id)
    assert httpx.get(url).status_code == 200

    hcloud_client.servers.shutdown(server).wait_until_finished()
    assert hcloud_client.servers.get_by_id(server.id).status == "off"
    assert refused(url)
    hcloud_client.servers.reset(server).wait_until_finished()
    sandbox.wait_for_gateway(server.id)
    assert hcloud_client.servers.get_by_id(server.id).status == "running"

    hcloud_client.servers.reboot(server).wait_until_finished()
    sandbox.wait_for_gateway(server.id)
    assert httpx.get(url).status_code == 200

    hcloud_client.servers.delete(server).wait_until_finished()
    eventually(lambda: refused(url))
    assert sandbox.gateway_state(server.id) == "down"


def test_rebuild_reads_new_user_data(sandbox, hcloud_client):
    server = new_server(hcloud_client, "claw-rebuild", "old-token")
    ip = server.public_net.ipv4.ip
    sandbox.wait_for_gateway(server.id)
    response = httpx.post(
        f"{sandbox.hcloud_url}/servers/{server.id}/actions/rebuild",
        headers={"Authorization": f"Bearer {sandbox.hcloud_token}"},
        json={"image": "ubuntu-24.04", "user_data": cloud_config("new-token")},
    )
    assert response.status_code == 201
    hcloud_client.actions.get_by_id(response.json()["action"]["id"]).wait_until_finished()
    sandbox.wait_for_gateway(server.id)
    assert (
        httpx.get(gateway(ip) + "/api/status", headers={"Authorization": "Bearer new-token"}).status_code
        == 200
    )
    assert (
        httpx.get(gateway(ip) + "/api/status", headers={"Authorization": "Bearer old-token"}).status_code
        == 401
    )


def test_drift_delete_power_off_and_kill_gateway(sandbox, hcloud_client):
    victim = new_server(hcloud_client, "claw-victim", "t1")
    sleeper = new_server(hcloud_client, "claw-sleeper", "t2")
    zombie = new_server(hcloud_client, "claw-zombie", "t3")
    for server in (victim, sleeper, zombie):
        sandbox.wait_for_gateway(server.id)
    firewall = hcloud_client.firewalls.create(name="fw-drift").firewall
    hcloud_client.firewalls.apply_to_resources(firewall, [FirewallResource(type="server", server=victim)])

    sandbox.drift.delete_server(victim.id)
    sandbox.drift.power_off_server(sleeper.id)
    sandbox.drift.kill_gateway(zombie.id)

    assert hcloud_client.servers.get_by_name("claw-victim") is None
    assert hcloud_client.firewalls.get_by_id(firewall.id) is not None  # firewall untouched
    assert hcloud_client.servers.get_by_id(sleeper.id).status == "off"
    assert hcloud_client.servers.get_by_id(zombie.id).status == "running"  # still "running"...
    for server in (victim, sleeper, zombie):
        eventually(lambda s=server: refused(gateway(s.public_net.ipv4.ip) + "/healthz"))  # ...but silent

    hcloud_client.servers.reboot(zombie).wait_until_finished()  # a reboot brings the process back
    sandbox.wait_for_gateway(zombie.id)
    inventory = sandbox.inventory()
    assert {s["name"]: s["gateway"]["state"] for s in inventory["servers"]} == {
        "claw-sleeper": "down",
        "claw-zombie": "up",
    }


@pytest.mark.parametrize("encoding", [None, "b64", "base64", "gzip+base64", "gz+b64"])
def test_cloud_init_encodings_are_understood(encoding):
    config = parse_gateway_config(cloud_config("enc-token", model="m1", encoding=encoding))
    assert config.token == "enc-token" and config.model == "m1"
    assert config.env_file_path == "/opt/openclaw/.env"
    assert config.llm_api_key == "ck_sandbox_test_key_0123456789"  # ${CLAWDET_LLM_API_KEY} resolved


NO_TOKEN_COMPOSE = """#cloud-config
write_files:
  - path: /opt/openclaw/docker-compose.yml
    content: |
      services:
        openclaw:
          image: ghcr.io/openclaw/openclaw:sandbox
          env_file: [.env]
  - path: /opt/openclaw/.env
    content: |
      CLAWDET_LLM_API_KEY=k
runcmd:
  - [docker, compose, --file, /opt/openclaw/docker-compose.yml, up, --detach]
"""


def test_cloud_init_without_token_gives_unready_gateway(sandbox, hcloud_client):
    """The old layout (compose up in runcmd) with no token in the env file. (Before the app layer
    moved to SSH, `#cloud-config {}` gave such a gateway; now it starts none: see test_ssh.py.)"""
    response = hcloud_client.servers.create(
        name="claw-no-token",
        server_type=ServerType(name="cx22"),
        image=Image(name="ubuntu-24.04"),
        user_data=NO_TOKEN_COMPOSE,
    )
    response.action.wait_until_finished()
    sandbox.wait_for_gateway(response.server.id)
    ip = response.server.public_net.ipv4.ip
    assert httpx.get(gateway(ip) + "/healthz").status_code == 200
    assert httpx.get(gateway(ip) + "/readyz").status_code == 503
    assert httpx.get(gateway(ip) + "/api/status", headers={"Authorization": "Bearer x"}).status_code == 401


def test_restart_keeps_state_and_restarts_running_gateways(tmp_path):
    state = tmp_path / "state.json"
    network = "127.201.0.0/16"
    box = start_sandbox(state, server_network=network)
    try:
        client = Client(token=box.hcloud_token, api_endpoint=box.hcloud_url, poll_interval=0.05)
        running = new_server(client, "claw-keep", "keep-token", labels={"k": "v"})
        stopped = new_server(client, "claw-off", "off-token")
        client.servers.power_off(stopped).wait_until_finished()
        firewall = client.firewalls.create(name="fw-keep").firewall
        token = box.hcloud_token
        box.wait_for_gateway(running.id)
    finally:
        box.stop()
    saved = json.loads(state.read_text())
    assert set(saved["servers"]) == {str(running.id), str(stopped.id)}
    ip = running.public_net.ipv4.ip
    assert refused(gateway(ip) + "/healthz")  # everything is down with the sandbox

    box = start_sandbox(state, server_network=network)
    try:
        assert box.hcloud_token == token  # same credentials after a restart
        client = Client(token=box.hcloud_token, api_endpoint=box.hcloud_url, poll_interval=0.05)
        assert {s.name for s in client.servers.get_all()} == {"claw-keep", "claw-off"}
        assert client.servers.get_by_id(running.id).labels == {"k": "v"}
        assert client.servers.get_by_id(stopped.id).status == "off"
        assert client.firewalls.get_by_id(firewall.id).name == "fw-keep"
        box.wait_for_gateway(running.id)
        assert (
            httpx.get(gateway(ip) + "/api/status", headers={"Authorization": "Bearer keep-token"}).status_code
            == 200
        )
        assert box.gateway_state(stopped.id) == "down"
        fresh = new_server(client, "claw-new", "n")  # ids and addresses keep counting
        assert fresh.id > max(running.id, stopped.id)
        assert fresh.public_net.ipv4.ip not in {ip, stopped.public_net.ipv4.ip}
    finally:
        box.stop()


def test_two_hundred_servers_with_gateways_in_one_process(tmp_path):
    box = start_sandbox(tmp_path / "state.json", boot_delay=0.05, server_network="127.202.0.0/16")
    try:
        client = Client(token=box.hcloud_token, api_endpoint=box.hcloud_url, poll_interval=0.05)
        ids = []
        for index in range(200):
            ids.append(
                client.servers.create(
                    name=f"claw-{index}",
                    server_type=ServerType(name="cx22"),
                    image=Image(name="ubuntu-24.04"),
                    user_data=cloud_config(f"tok-{index}"),
                ).server.id
            )
        eventually(lambda: box.inventory()["gateways_up"] == 200, timeout=20)
        servers = client.servers.get_all()
        assert len(servers) == 200 and len({s.public_net.ipv4.ip for s in servers}) == 200

        async def probe_all() -> list[int]:
            async with httpx.AsyncClient(timeout=5) as http:
                responses = await asyncio.gather(
                    *(
                        http.get(
                            gateway(s.public_net.ipv4.ip) + "/api/status",
                            headers={"Authorization": f"Bearer tok-{s.name.split('-')[1]}"},
                        )
                        for s in servers
                    )
                )
            return [r.status_code for r in responses]

        assert asyncio.run(probe_all()) == [200] * 200
    finally:
        box.stop()
