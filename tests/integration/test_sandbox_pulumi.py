"""The real Pulumi engine and provider plugins (hcloud 1.39.1, cloudflare 6.17.0) against the
sandbox: a tiny project in tmp_path, file:// backend, passphrase secrets.

The providers are pointed at the sandbox only through the environment the provisioner uses
(``Sandbox.provider_env()``): HCLOUD_TOKEN, HCLOUD_ENDPOINT, CLOUDFLARE_API_TOKEN,
CLOUDFLARE_BASE_URL. Skipped until `make toolchain` has the CLI and both plugins.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.sandbox_fixtures import cloud_config

pytestmark = pytest.mark.engine

PROGRAM = '''
import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_hcloud as hcloud

config = pulumi.Config()
name = config.require("name")
labels = {"managed-by": "clawdet", "clawdet-instance": name}
firewall = hcloud.Firewall(
    "firewall", name=f"{name}-fw", labels=labels,
    rules=[hcloud.FirewallRuleArgs(direction="in", protocol="tcp", port="18789", source_ips=["0.0.0.0/0", "::/0"]),
           hcloud.FirewallRuleArgs(direction="in", protocol="icmp", source_ips=["0.0.0.0/0", "::/0"])])
server = hcloud.Server(
    "server", name=name, server_type="cx22", image="ubuntu-24.04", location="fsn1", labels=labels,
    user_data=config.require_secret("userData"), firewall_ids=[firewall.id.apply(int)],
    public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)])
record = cloudflare.DnsRecord(
    "dns", zone_id=config.require("zoneId"), name=name, type="A", content=server.ipv4_address, ttl=1, proxied=True)
pulumi.export("server_id", server.id)
pulumi.export("ipv4", server.ipv4_address)
pulumi.export("record_id", record.id)
'''


def toolchain_or_fail():
    try:
        from provisioner import toolchain
    except ImportError as exc:
        pytest.fail(f"provisioner.toolchain is not available: {exc}")
    found = toolchain.find()
    if found is None:
        pytest.fail("the Pulumi toolchain is not built (make toolchain)")
    missing = [name for name in ("hcloud", "cloudflare") if not found.has_plugin(name)]
    if missing:
        pytest.fail(f"provider plugins not installed: {', '.join(missing)} (see make toolchain)")
    return found


@pytest.fixture
def stack(sandbox, tmp_path: Path):
    from pulumi import automation as auto

    toolchain = toolchain_or_fail()
    project = tmp_path / "project"
    project.mkdir()
    (project / "__main__.py").write_text(textwrap.dedent(PROGRAM))
    (project / "Pulumi.yaml").write_text(textwrap.dedent(f"""\
        name: sandbox-check
        runtime:
          name: python
          options:
            toolchain: pip
            virtualenv: {Path(sys.executable).parent.parent}
        """))
    backend = tmp_path / "state"
    backend.mkdir()
    env = {
        **toolchain.env({"PATH": os.environ.get("PATH", "")}),
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": "sandbox-test-passphrase",
        **sandbox.provider_env(),  # the only thing that points the providers at the sandbox
    }
    workspace = auto.LocalWorkspace(
        work_dir=str(project), pulumi_home=env.get("PULUMI_HOME"), env_vars=env,
        pulumi_command=auto.PulumiCommand(root=str(toolchain.root)), secrets_provider="passphrase")
    created = auto.Stack.create("dev", workspace)
    created.set_config("name", auto.ConfigValue("claw-pulumi"))
    created.set_config("zoneId", auto.ConfigValue(sandbox.zone_id))
    created.set_config("userData", auto.ConfigValue(cloud_config("pulumi-token"), secret=True))
    created.set_config("hcloud:pollInterval", auto.ConfigValue("100ms"))
    yield created
    try:
        created.destroy(on_output=lambda _: None)
    finally:
        workspace.remove_stack("dev", force=True)


def test_up_refresh_preview_destroy(sandbox, stack):
    up = stack.up(on_output=print)
    server_id = int(up.outputs["server_id"].value)
    ipv4 = up.outputs["ipv4"].value
    record_id = up.outputs["record_id"].value

    inventory = sandbox.inventory()
    [server] = inventory["servers"]
    assert server["id"] == server_id and server["name"] == "claw-pulumi" and server["status"] == "running"
    assert server["labels"] == {"managed-by": "clawdet", "clawdet-instance": "claw-pulumi"}
    [firewall] = inventory["firewalls"]
    assert server["firewall_ids"] == [firewall["id"]] and len(firewall["rules"]) == 2
    [record] = inventory["dns_records"]
    assert record["id"] == record_id and record["content"] == ipv4 == server["ipv4"]
    assert record["name"] == "claw-pulumi.clawdet.test" and record["proxied"] is True and record["ttl"] == 1
    sandbox.wait_for_gateway(server_id)
    assert httpx.get(f"http://{ipv4}:18789/api/status",
                     headers={"Authorization": "Bearer pulumi-token"}).status_code == 200

    refreshed = stack.refresh(on_output=print)
    assert refreshed.summary.result == "succeeded"
    assert set((refreshed.summary.resource_changes or {}).keys()) <= {"same"}
    stack.preview(expect_no_changes=True, on_output=print)

    # Drift out of band, then converge again.
    sandbox.drift.set_dns_content(record_id, "127.9.9.9")
    sandbox.drift.delete_server(server_id)
    stack.up(refresh=True, on_output=print)
    inventory = sandbox.inventory()
    [server] = inventory["servers"]
    assert server["id"] != server_id
    assert inventory["dns_records"][0]["content"] == server["ipv4"]
    stack.preview(expect_no_changes=True, on_output=print)

    stack.destroy(on_output=print)
    inventory = sandbox.inventory()
    assert inventory["servers"] == [] and inventory["firewalls"] == [] and inventory["dns_records"] == []
