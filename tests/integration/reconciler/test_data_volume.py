"""The customer's data lives on a Hetzner Volume: a rotated key is pushed in place, a replaced
server gets the same volume back, and so does a resumed one, and each time the real OpenClaw
gateway finds its conversation again (real engine, stand-in plugins, sandbox)."""

import httpx
import pytest

from clawdet.instances import credentials, rotation
from clawdet.instances.requests import request_action, request_destroy, request_pause, request_resume
from db.models import Instance
from programs import tiers
from sandbox import openclaw as openclaw_install
from tests.fixtures.provisioning import instance, new_instance, servers_named

pytestmark = [pytest.mark.engine, pytest.mark.postgres]


@pytest.fixture
def cloud_sandbox(tmp_path):
    """This module's fake servers run the real OpenClaw gateway."""
    from sandbox import Sandbox

    if openclaw_install.find() is None:
        pytest.fail(
            "OpenClaw is not installed for the sandbox: run `make openclaw` (make test does it first)."
        )
    with Sandbox(
        tmp_path / "sandbox" / "state.json",
        boot_delay=0.3,
        action_delay=0.05,
        real_gateways=1,
        server_network="127.40.0.0/16",
    ) as box:
        yield box


def chat(ready: Instance, settings, text: str) -> str:
    token = credentials.gateway_token(credentials.Roots.of(settings), ready)
    response = httpx.post(
        f"http://{ready.ipv4}:18789/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "openclaw", "user": "volume-test", "messages": [{"role": "user", "content": text}]},
        timeout=180,
    )
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_a_replaced_server_finds_the_customers_data_on_its_volume(
    reconciler, prov_db, prov_settings, cloud_sandbox
):
    instance_id = new_instance(prov_db, prov_settings, "keeper")
    assert reconciler.drain() == 1
    first = instance(prov_db, instance_id)
    assert first.status == "ready", first.status_message
    [volume] = cloud_sandbox.inventory()["volumes"]
    assert volume["name"] == "keeper-data" and volume["size"] == tiers.TIERS["free"].volume_gb
    assert volume["server"] == int(first.server_id) and volume["location"]["name"] == first.region
    assert volume["linux_device"] == f"/dev/disk/by-id/scsi-0HC_Volume_{volume['id']}"
    assert cloud_sandbox.inventory()["servers"][0]["gateway"]["kind"] == "openclaw"

    assert "remember the word pelican" in chat(first, prov_settings, "remember the word pelican")
    on_volume = cloud_sandbox.store.path.parent / "volumes" / str(volume["id"]) / "state"
    assert (on_volume / "agents").is_dir()  # the gateway's state is on the volume, not the server

    # A rotated LLM key reaches the running gateway in place: same server, and it still answers.
    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        rotation.rotate_llm_key(session, row, actor=row.user)
    assert reconciler.drain() == 1
    rotated = instance(prov_db, instance_id)
    assert rotated.status == "ready" and rotated.server_id == first.server_id, rotated.status_message
    assert rotated.llm_key_previous_hash is None  # the old key stopped once the new one was live
    chat(rotated, prov_settings, "which word did I ask you to remember?")  # through the new key
    assert "remember the word pelican" in cloud_sandbox.llm.completions()[-1].conversation

    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        request_action(session, row.user, row, "rebuild")  # replaces the server
    assert reconciler.drain() == 1
    rebuilt = instance(prov_db, instance_id)
    assert rebuilt.status == "ready", rebuilt.status_message
    assert rebuilt.server_id != first.server_id and len(servers_named(cloud_sandbox, "keeper")) == 1
    [same] = cloud_sandbox.inventory()["volumes"]
    assert same["id"] == volume["id"] and same["server"] == int(rebuilt.server_id)

    # The same conversation goes on: the gateway replays it to the model from the volume.
    chat(rebuilt, prov_settings, "still there?")
    assert "remember the word pelican" in cloud_sandbox.llm.completions()[-1].conversation

    # Paused: no server; resumed: a new one with the same volume, and the conversation goes on.
    for request in (request_pause, request_resume):
        with prov_db.session() as session:
            row = session.get(Instance, instance_id)
            request(session, row.user, row)
        assert reconciler.drain() == 1
    resumed = instance(prov_db, instance_id)
    assert resumed.status == "ready", resumed.status_message
    assert resumed.server_id not in (rebuilt.server_id, None) and resumed.volume_id == str(volume["id"])
    chat(resumed, prov_settings, "and now?")
    assert "remember the word pelican" in cloud_sandbox.llm.completions()[-1].conversation

    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        request_destroy(session, row.user, row)
    assert reconciler.drain() == 1
    assert cloud_sandbox.inventory()["volumes"] == []  # destroy removes the data too
    assert not on_volume.exists()
