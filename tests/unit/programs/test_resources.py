"""The ClawInstance component and the program's entry point, against Pulumi's mocks (offline).

Each test starts a fresh Pulumi runtime (new root stack, new mock monitor, empty config).
"""

from __future__ import annotations

import asyncio

import pulumi
import pytest
from pulumi.runtime import settings as runtime_settings

from programs import __main__ as entry_point
from programs import tiers
from programs.claw_instance import ClawInstance
from programs.cloudflare_ips import CLOUDFLARE_RANGES
from programs.instance_config import (
    SECRET_FULL_NAMES,
    ClawInstanceArgs,
    OutputName,
    StackConfigError,
    to_stack_config,
)

pytestmark = pytest.mark.usefixtures("current_event_loop")
SERVER = "hcloud:index/server:Server"
FIREWALL = "hcloud:index/firewall:Firewall"
VOLUME = "hcloud:index/volume:Volume"
ATTACHMENT = "hcloud:index/volumeAttachment:VolumeAttachment"
VOLUME_ID = "7070"
DNS_RECORD = "cloudflare:index/dnsRecord:DnsRecord"
COMPONENT = "clawdet:index:ClawInstance"

SERVER_IPV4 = "203.0.113.10"
SERVER_IPV6 = "2001:db8:1::1"
FIREWALL_ID = "4711"
GATEWAY_TOKEN = "gw-" + "5e" * 20
LLM_KEY = "clw-instance-key-abcdef0123"
UPSTREAM_KEY = "sk-upstream-PLATFORM-ONLY-do-not-ship-0123456789"
SECRET_SIGNATURE = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret on the wire


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args):
        self.resources.append(args)
        state = dict(args.inputs)
        if args.typ == SERVER:
            ipv6 = SERVER_IPV6 if args.inputs["publicNets"][0]["ipv6Enabled"] else ""
            state |= {"ipv4Address": SERVER_IPV4, "ipv6Address": ipv6, "status": "running"}
            return "1001", state
        if args.typ == FIREWALL:
            return FIREWALL_ID, state
        if args.typ == VOLUME:
            return VOLUME_ID, state | {"linuxDevice": f"/dev/disk/by-id/scsi-0HC_Volume_{VOLUME_ID}"}
        return f"rec-{args.name}", state

    def call(self, args):
        return {}

    def of_type(self, typ):
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ):
        (resource,) = self.of_type(typ)
        return resource


@pytest.fixture
def mocks():
    runtime_settings.reset_options(project="clawdet-instance", stack="test", preview=False)
    recording = RecordingMocks()
    pulumi.runtime.set_mocks(recording, project="clawdet-instance", stack="test", preview=False)
    pulumi.runtime.set_all_config({}, [])
    yield recording
    pulumi.runtime.set_all_config({}, [])
    runtime_settings.reset_options()  # leave no mock monitor behind for other tests


def instance_args(**overrides) -> ClawInstanceArgs:
    values = {
        "subdomain": "alice",
        "tier": "pro",
        "user_id": "user_42",
        "base_domain": "clawdet.example",
        "cloudflare_zone_id": "0123456789abcdef0123456789abcdef",
        "model": "grok-4",
        "llm_base_url": "https://clawdet.example/llm/v1",
        "llm_api_key": pulumi.Output.secret(LLM_KEY),
        "gateway_token": pulumi.Output.secret(GATEWAY_TOKEN),
    }
    values.update(overrides)
    return ClawInstanceArgs(**values)


def settled(*outputs, check):
    """Run `check` once every resource is registered and the outputs are known."""

    async def wait_then_check():
        for output in outputs:
            await output.future()
        return await check() if asyncio.iscoroutinefunction(check) else check()

    return asyncio.ensure_future(wait_then_check())


def wire_secret_value(value):
    assert isinstance(value, dict) and value.get(SECRET_SIGNATURE), f"not a secret: {value!r}"
    return value["value"]


# --- resources ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "region"),
    [
        ("free", "hel1"),
        ("pro", "fsn1"),
        ("enterprise", "nbg1"),
        ("pro", "ash"),
        ("free", "sin"),
        ("enterprise", "hil"),
    ],
)
def test_an_instance_is_a_firewall_a_volume_a_server_and_its_dns_records(mocks, tier, region):
    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args(tier=tier, region=region))

        def check():
            assert sorted(r.typ for r in mocks.resources) == sorted(
                [COMPONENT, FIREWALL, VOLUME, SERVER, ATTACHMENT, DNS_RECORD, DNS_RECORD]
            )
            server = mocks.one(SERVER).inputs
            assert server["serverType"] == tiers.server_type_for(tier, region).name
            assert server["location"] == region
            assert server["image"] == "ubuntu-24.04"
            assert server["name"] == "alice"
            assert server["labels"] == {
                "managed-by": "clawdet",
                "clawdet-instance": "alice",
                "clawdet-user": "user_42",
                "clawdet-tier": tier,
            }
            assert [int(i) for i in server["firewallIds"]] == [int(FIREWALL_ID)]
            assert server["publicNets"] == [{"ipv4Enabled": True, "ipv6Enabled": True}]
            assert server["sshKeys"] == []
            assert mocks.one(FIREWALL).inputs["labels"] == server["labels"]
            volume = mocks.one(VOLUME).inputs
            assert volume["name"] == "alice-data" and volume["location"] == region
            assert volume["size"] == tiers.TIERS[tier].volume_gb and volume["format"] == "ext4"
            assert volume["labels"] == server["labels"]
            attachment = mocks.one(ATTACHMENT).inputs
            assert (attachment["serverId"], attachment["volumeId"]) == (1001, int(VOLUME_ID))
            assert attachment["automount"] is False
            user_data = wire_secret_value(server["userData"])
            assert f"/dev/disk/by-id/scsi-0HC_Volume_{VOLUME_ID}" in user_data

            records = {r.inputs["type"]: r.inputs for r in mocks.of_type(DNS_RECORD)}
            assert records["A"]["content"] == SERVER_IPV4
            assert records["AAAA"]["content"] == SERVER_IPV6
            for record in records.values():
                assert record["name"] == "alice.clawdet.example"
                assert record["zoneId"] == "0123456789abcdef0123456789abcdef"
                assert record["proxied"] is True
                assert record["ttl"] == 1

        return settled(
            instance.server_id, instance.dns_record_ids, instance.volume_attachment.id, check=check
        )

    run()


def test_without_ipv6_there_is_no_aaaa_record(mocks):
    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args(ipv6=False, proxied=False))

        def check():
            assert mocks.one(SERVER).inputs["publicNets"] == [{"ipv4Enabled": True, "ipv6Enabled": False}]
            record = mocks.one(DNS_RECORD).inputs
            assert (record["type"], record["content"], record["proxied"]) == ("A", SERVER_IPV4, False)

        return settled(instance.server_id, instance.dns_record_ids, check=check)

    run()


def test_ssh_keys_are_passed_to_the_server(mocks):
    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args(ssh_keys=("ops", "4242")))

        def check():
            assert mocks.one(SERVER).inputs["sshKeys"] == ["ops", "4242"]

        return settled(instance.server_id, check=check)

    run()


# --- firewall ----------------------------------------------------------------------------------


def rules_by_port(mocks):
    rules = mocks.one(FIREWALL).inputs["rules"]
    assert all(rule["direction"] == "in" and rule["protocol"] == "tcp" for rule in rules)
    return {rule["port"]: rule["sourceIps"] for rule in rules}


def test_proxied_web_ports_accept_only_cloudflare_and_ssh_is_closed_without_operators(mocks):
    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args(proxied=True))

        def check():
            ports = rules_by_port(mocks)
            assert set(ports) == {"80", "443"}  # no rule for 22: Hetzner drops it
            assert ports["80"] == ports["443"] == list(CLOUDFLARE_RANGES)
            assert "0.0.0.0/0" not in ports["443"]

        return settled(instance.server_id, check=check)

    run()


def test_unproxied_web_ports_are_open_and_ssh_only_from_operator_networks(mocks):
    cidrs = ("198.51.100.0/24", "2001:db8:ff::/48")

    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args(proxied=False, operator_ssh_cidrs=cidrs))

        def check():
            ports = rules_by_port(mocks)
            assert set(ports) == {"22", "80", "443"}
            assert ports["22"] == list(cidrs)
            assert ports["80"] == ports["443"] == ["0.0.0.0/0", "::/0"]

        return settled(instance.server_id, check=check)

    run()


# --- secrets -----------------------------------------------------------------------------------


def test_user_data_is_secret_and_carries_only_the_instance_credentials(mocks, monkeypatch):
    for name in ("CLAWDET_LLM_UPSTREAM_API_KEY", "XAI_API_KEY", "OPENAI_API_KEY", "LLM_API_KEY"):
        monkeypatch.setenv(name, UPSTREAM_KEY)

    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args())

        async def check():
            assert await instance.server.user_data.is_secret()
            user_data = wire_secret_value(mocks.one(SERVER).inputs["userData"])
            assert user_data.startswith("#cloud-config\n")
            assert f"OPENCLAW_GATEWAY_TOKEN={GATEWAY_TOKEN}" in user_data
            assert f"CLAWDET_LLM_API_KEY={LLM_KEY}" in user_data
            assert UPSTREAM_KEY not in user_data

        return settled(instance.server_id, check=check)

    run()


# --- the entry point (stack config in, outputs out) ---------------------------------------------


def set_stack_config(**overrides):
    values = {
        "subdomain": "bob",
        "tier": "enterprise",
        "region": "nbg1",
        "user_id": "u-7",
        "base_domain": "clawdet.example",
        "cloudflare_zone_id": "fedcba9876543210fedcba9876543210",
        "model": "grok-4",
        "llm_base_url": "https://clawdet.example/llm/v1",
        "llm_api_key": LLM_KEY,
        "gateway_token": GATEWAY_TOKEN,
    }
    values.update(overrides)
    written = to_stack_config(**values)
    config = {name: text for name, (text, _) in written.items()}
    pulumi.runtime.set_all_config(config, [name for name, (_, secret) in written.items() if secret])
    return config


def test_the_program_reads_the_stack_and_exports_plain_outputs(mocks, monkeypatch):
    monkeypatch.setenv("CLAWDET_LLM_UPSTREAM_API_KEY", UPSTREAM_KEY)
    set_stack_config()

    @pulumi.runtime.test
    def run():
        outputs = entry_point.main()

        async def check():
            resolved = {name: await output.future() for name, output in outputs.items()}
            assert resolved == {
                OutputName.SERVER_ID: "1001",
                OutputName.VOLUME_ID: VOLUME_ID,
                OutputName.SERVER_STATUS: "running",
                OutputName.IPV4: SERVER_IPV4,
                OutputName.IPV6: SERVER_IPV6,
                OutputName.DNS_RECORD_IDS: ["rec-instance-dns-a", "rec-instance-dns-aaaa"],
                OutputName.FQDN: "bob.clawdet.example",
                OutputName.URL: "https://bob.clawdet.example",
                OutputName.TIER: "enterprise",
                OutputName.REGION: "nbg1",
                OutputName.SERVER_TYPE: "cpx32",
            }
            for name, output in outputs.items():
                assert not await output.is_secret(), f"{name} should be a plain output"
            assert GATEWAY_TOKEN not in repr(resolved) and LLM_KEY not in repr(resolved)
            user_data = wire_secret_value(mocks.one(SERVER).inputs["userData"])
            assert UPSTREAM_KEY not in user_data
            assert "browser:" in user_data  # the enterprise compose file

        return settled(*outputs.values(), check=check)

    run()


def test_the_program_refuses_a_secret_stored_in_plain_text(mocks):
    config = set_stack_config()
    pulumi.runtime.set_all_config(config, [SECRET_FULL_NAMES[0]])

    with pytest.raises(StackConfigError, match="stored in plain text") as caught:
        entry_point.main()
    assert set(caught.value.problems) == set(SECRET_FULL_NAMES[1:])
    assert mocks.resources == []


def test_the_program_refuses_unknown_keys_in_its_namespace(mocks):
    config = set_stack_config()
    pulumi.runtime.set_all_config({**config, "clawdet:teir": "pro"}, list(SECRET_FULL_NAMES))

    with pytest.raises(StackConfigError, match="clawdet:teir: is not a known key"):
        entry_point.main()


def test_the_program_names_the_bad_key_and_the_allowed_values(mocks):
    config = set_stack_config()
    pulumi.runtime.set_all_config({**config, "clawdet:tier": "gold"}, list(SECRET_FULL_NAMES))

    with pytest.raises(
        StackConfigError, match="clawdet:tier: 'gold' is not allowed; allowed values: free, pro, enterprise"
    ):
        entry_point.main()
    assert mocks.resources == []
