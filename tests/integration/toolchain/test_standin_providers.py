"""Clawdet's offline stand-in provider plugins (toolchain/standin-providers) driven by the real
Pulumi engine and the unchanged Python SDKs (pulumi_hcloud 1.39.1, pulumi_cloudflare 6.17.0)
against the sandbox: a tiny project in tmp_path, a file:// backend, passphrase secrets.

The stand-ins are built from the current sources (reused when unchanged) and installed into a
PULUMI_HOME of this test run only, so these tests exercise the stand-ins even where the real
plugins are installed in the toolchain. They FAIL, never skip, when the toolchain or Go is missing.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from sandbox import Sandbox
from tests.fixtures.sandbox import cloud_config, next_test_network
from tests.integration.toolchain.conftest import local_stack

pytestmark = pytest.mark.engine

GATEWAY_TOKEN = "standin-gateway-token-0123456789abcdef"
SECRET_SIG, SECRET_VALUE = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"

PROGRAM = """
import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_hcloud as hcloud

config = pulumi.Config()
name = config.require("name")
zone = config.require("zoneName")
labels = {"managed-by": "clawdet", "clawdet-instance": name, "clawdet-tier": config.get("tier") or "free"}
rules = [
    hcloud.FirewallRuleArgs(direction="in", protocol="tcp", port="443", source_ips=["0.0.0.0/0", "::/0"],
                            description="HTTPS"),
    hcloud.FirewallRuleArgs(direction="in", protocol="icmp", source_ips=["0.0.0.0/0", "::/0"]),
]
if config.get_bool("badRule"):
    rules.append(hcloud.FirewallRuleArgs(direction="in", protocol="tcp", source_ips=["0.0.0.0/0"]))
firewall = hcloud.Firewall("firewall", name=f"{name}-fw", labels=labels, rules=rules)
server = hcloud.Server(
    "server", name=name, server_type="cx22", image="ubuntu-24.04", location="fsn1", labels=labels,
    user_data=pulumi.Output.secret(config.require_secret("userData")),
    firewall_ids=[firewall.id.apply(int)],
    public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
    shutdown_before_deletion=True,
    opts=pulumi.ResourceOptions(delete_before_replace=True))
record = cloudflare.DnsRecord(
    "dns-a", zone_id=config.require("zoneId"), name=f"{name}.{zone}", type="A", content=server.ipv4_address,
    proxied=True, ttl=1, comment=f"clawdet instance {name}")
pulumi.export("server_id", server.id)
pulumi.export("ipv4", server.ipv4_address)
pulumi.export("ipv6", server.ipv6_address)
pulumi.export("status", server.status)
pulumi.export("firewall_id", firewall.id)
pulumi.export("record_id", record.id)
pulumi.export("record_name", record.name)
"""


@pytest.fixture
def box(tmp_path: Path):
    sb = Sandbox(tmp_path / "s.json", boot_delay=0.2, action_delay=0.05, server_network=next_test_network())
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


def make_stack(box: Sandbox, tc, tmp_path: Path, *, name: str = "claw-standin"):
    from pulumi import automation as auto

    project = tmp_path / "project"
    project.mkdir()
    (project / "__main__.py").write_text(textwrap.dedent(PROGRAM))
    (project / "Pulumi.yaml").write_text(
        textwrap.dedent(f"""\
        name: standin-check
        runtime:
          name: python
          options:
            toolchain: pip
            virtualenv: {Path(sys.executable).parent.parent}
        """)
    )
    stack = local_stack(
        tc, project, tmp_path / "state", "standin-test-passphrase", **box.provider_env()
    )  # HCLOUD_TOKEN, HCLOUD_ENDPOINT, CLOUDFLARE_API_TOKEN, CLOUDFLARE_BASE_URL
    stack.set_config("name", auto.ConfigValue(name))
    stack.set_config("zoneId", auto.ConfigValue(box.zone_id))
    stack.set_config("zoneName", auto.ConfigValue(box.zone_name))
    stack.set_config("userData", auto.ConfigValue(cloud_config(GATEWAY_TOKEN), secret=True))
    stack.set_config("hcloud:pollInterval", auto.ConfigValue("50ms"))
    return stack


@pytest.fixture
def stack(box, standin_toolchain, tmp_path):
    created = make_stack(box, standin_toolchain, tmp_path)
    yield created
    try:
        created.destroy(on_output=lambda _: None)
    finally:
        created.workspace.remove_stack("dev", force=True)


def sandbox_user_data(box: Sandbox, server_id: int) -> str:
    """What the fake Hetzner API stored as the server's user_data (read from its state store)."""
    return box.store.data["servers"][str(server_id)]["user_data"]


def changes(result) -> dict[str, int]:
    return {k: v for k, v in (result.summary.resource_changes or {}).items() if k != "same"}


def test_up_refresh_drift_update_destroy(box, stack, tmp_path):
    # A preview of a new stack: Check/Diff see unknowns (the firewall id, the server's address).
    preview = stack.preview(on_output=print)
    assert preview.change_summary.get("create") == 4  # the stack, firewall, server, record

    up = stack.up(on_output=print)
    outputs = {k: v.value for k, v in up.outputs.items()}
    server_id, ipv4 = int(outputs["server_id"]), outputs["ipv4"]
    assert outputs["status"] == "running" and outputs["ipv6"].endswith("::1")
    assert outputs["record_name"] == f"claw-standin.{box.zone_name}"

    inventory = box.inventory()
    [server] = inventory["servers"]
    assert server["id"] == server_id and server["name"] == "claw-standin" and server["status"] == "running"
    assert server["ipv4"] == ipv4
    assert server["labels"] == {
        "managed-by": "clawdet",
        "clawdet-instance": "claw-standin",
        "clawdet-tier": "free",
    }
    [firewall] = inventory["firewalls"]
    assert firewall["id"] == int(outputs["firewall_id"]) and server["firewall_ids"] == [firewall["id"]]
    assert firewall["name"] == "claw-standin-fw" and firewall["labels"] == server["labels"]
    assert [(r["protocol"], r.get("port"), sorted(r["source_ips"])) for r in firewall["rules"]] == [
        ("tcp", "443", ["0.0.0.0/0", "::/0"]),
        ("icmp", None, ["0.0.0.0/0", "::/0"]),
    ]
    [record] = inventory["dns_records"]
    assert record["id"] == outputs["record_id"] and record["type"] == "A" and record["content"] == ipv4
    assert (
        record["name"] == f"claw-standin.{box.zone_name}" and record["proxied"] is True and record["ttl"] == 1
    )
    assert record["comment"] == "clawdet instance claw-standin"
    assert sandbox_user_data(box, server_id) == cloud_config(GATEWAY_TOKEN)
    box.wait_for_gateway(server_id)
    assert (
        httpx.get(
            f"http://{ipv4}:18789/api/status", headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}
        ).status_code
        == 200
    )

    # userData stays a secret: marked secret in the state, encrypted in the checkpoint file.
    [state_server] = [
        r for r in stack.export_stack().deployment["resources"] if r["type"] == "hcloud:index/server:Server"
    ]
    for side in ("inputs", "outputs"):
        assert state_server[side]["userData"][SECRET_SIG] == SECRET_VALUE
    checkpoints = list((tmp_path / "state").rglob("dev.json"))
    assert checkpoints and all(GATEWAY_TOKEN not in p.read_text() for p in checkpoints)

    refreshed = stack.refresh(on_output=print)
    assert refreshed.summary.result == "succeeded" and changes(refreshed) == {}
    stack.preview(expect_no_changes=True, on_output=print)

    # An input that changes in place (labels): an update, the same server.
    from pulumi import automation as auto

    stack.set_config("tier", auto.ConfigValue("pro"))
    updated = stack.up(on_output=print)
    assert changes(updated) == {"update": 2}  # firewall and server labels
    [server] = box.inventory()["servers"]
    assert server["id"] == server_id and server["labels"]["clawdet-tier"] == "pro"
    stack.preview(expect_no_changes=True, on_output=print)

    # Out-of-band drift: refresh sees it, up repairs it.
    box.drift.set_dns_content(record["id"], "127.9.9.9")
    box.drift.delete_server(server_id)
    refreshed = stack.refresh(on_output=print)
    assert changes(refreshed) == {"delete": 1, "update": 1}  # the server is gone; the record changed
    repaired = stack.up(on_output=print)
    assert repaired.summary.resource_changes.get("create") == 1
    inventory = box.inventory()
    [server] = inventory["servers"]
    assert server["id"] != server_id and server["status"] == "running"
    assert server["firewall_ids"] == [firewall["id"]]
    [record] = inventory["dns_records"]
    assert record["content"] == server["ipv4"] == repaired.outputs["ipv4"].value
    stack.preview(expect_no_changes=True, on_output=print)

    # `up --refresh` alone restores a changed record.
    box.drift.set_dns_content(record["id"], "127.9.9.8")
    stack.up(refresh=True, on_output=print)
    assert box.inventory()["dns_records"][0]["content"] == server["ipv4"]

    stack.destroy(on_output=print)
    inventory = box.inventory()
    assert inventory["servers"] == [] and inventory["firewalls"] == [] and inventory["dns_records"] == []


def test_transient_api_errors_are_retried(box, stack):
    box.faults.add(service="hetzner", method="POST", path="/v1/servers", status=503, fail_next=2)
    box.faults.add(
        service="cloudflare", method="POST", path="*/dns_records", status=429, retry_after=0.2, fail_next=1
    )
    box.faults.add(service="hetzner", method="GET", path="/v1/actions/*", status=500, fail_next=2)
    up = stack.up(on_output=print)
    inventory = box.inventory()
    assert len(inventory["servers"]) == 1 and len(inventory["dns_records"]) == 1
    assert inventory["dns_records"][0]["content"] == up.outputs["ipv4"].value
    server_posts = [e for e in box.requests("hetzner") if e.method == "POST" and e.path == "/v1/servers"]
    assert [e.status for e in server_posts] == [503, 503, 201]


def test_invalid_inputs_fail_in_check_with_a_clear_message(box, stack):
    from pulumi import automation as auto

    stack.set_config("badRule", auto.ConfigValue("true"))
    with pytest.raises(auto.CommandError) as failure:
        stack.up(on_output=print)
    assert "required for tcp and udp rules" in str(failure.value)
    inventory = box.inventory()
    assert inventory["servers"] == [] and inventory["firewalls"] == []
