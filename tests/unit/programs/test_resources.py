"""The ClawInstance component and the program's entry point, against Pulumi's mocks (offline).

Each test starts a fresh Pulumi runtime (new root stack, new mock monitor, empty config).
"""

from __future__ import annotations

import asyncio

import pulumi
import pytest
import yaml
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import settings as runtime_settings

from programs import __main__ as entry_point
from programs import cloud_init, ssh_keys, tiers
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
COPY = "command:remote:CopyToRemote"
COMMAND = "command:remote:Command"
COMPONENT = "clawdet:index:ClawInstance"
SERVER_ID = "1001"

SERVER_IPV4 = "203.0.113.10"
SERVER_IPV6 = "2001:db8:1::1"
PAUSED_PAGE_IPV4 = "198.51.100.80"
FIREWALL_ID = "4711"
GATEWAY_TOKEN = "gw-" + "5e" * 20
LLM_KEY = "clw-instance-key-abcdef0123"
UPSTREAM_KEY = "sk-upstream-PLATFORM-ONLY-do-not-ship-0123456789"
PLATFORM_KEY = ssh_keys.generate()
PUBLIC_KEY = ssh_keys.public_key(PLATFORM_KEY)
ROTATED_KEY = ssh_keys.generate()
ROTATED_PUBLIC_KEY = ssh_keys.public_key(ROTATED_KEY)
CONTROL_PLANE = ("192.0.2.0/28",)
APP_FILES = {".env", "openclaw.json", "docker-compose.yml", "Caddyfile"}
COPY_NAMES = {  # one CopyToRemote per file of the app layer
    ".env": "instance-release-env",
    "openclaw.json": "instance-release-openclaw.json",
    "Caddyfile": "instance-release-caddyfile",
    "docker-compose.yml": "instance-release-docker-compose.yml",
}
SECRET_SIGNATURE = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret on the wire


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.requests: dict[str, object] = {}  # resource name -> its RegisterResourceRequest

    def new_resource(self, args):
        self.resources.append(args)
        state = dict(args.inputs)
        if args.typ == SERVER:
            ipv6 = SERVER_IPV6 if args.inputs["publicNets"][0]["ipv6Enabled"] else ""
            state |= {"ipv4Address": SERVER_IPV4, "ipv6Address": ipv6, "status": "running"}
            return SERVER_ID, state
        if args.typ == FIREWALL:
            return FIREWALL_ID, state
        if args.typ == VOLUME:
            return VOLUME_ID, state | {"linuxDevice": f"/dev/disk/by-id/scsi-0HC_Volume_{VOLUME_ID}"}
        if args.typ == COMMAND:
            return f"cmd-{args.name}", state | {"stdout": "", "stderr": ""}
        return f"rec-{args.name}", state

    def call(self, args):
        return {}

    def of_type(self, typ):
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ):
        (resource,) = self.of_type(typ)
        return resource

    def depends_on(self, name: str) -> set[str]:
        """Names of the resources `name` waits for (explicit and through its inputs)."""
        return {urn.rsplit("::", 1)[1] for urn in self.requests[name].dependencies}


class RecordingMonitor(runtime_mocks.MockMonitor):
    """Pulumi's mock monitor, keeping each registration's options (dependencies, timeouts)."""

    def RegisterResource(self, request):
        self.mocks.requests[request.name] = request
        return super().RegisterResource(request)


def fresh_runtime() -> RecordingMocks:
    runtime_settings.reset_options(project="clawdet-instance", stack="test", preview=False)
    recording = RecordingMocks()
    pulumi.runtime.set_mocks(
        recording,
        project="clawdet-instance",
        stack="test",
        preview=False,
        monitor=RecordingMonitor(recording),
    )
    pulumi.runtime.set_all_config({}, [])
    return recording


@pytest.fixture
def mocks():
    yield fresh_runtime()
    pulumi.runtime.set_all_config({}, [])
    runtime_settings.reset_options()  # leave no mock monitor behind for other tests


def instance_args(**overrides) -> ClawInstanceArgs:
    values = {
        "subdomain": "alice",
        "tier": "pro",
        "installation_id": "cd-test",
        "instance_id": "inst_test",
        "user_id": "user_42",
        "base_domain": "clawdet.example",
        "cloudflare_zone_id": "0123456789abcdef0123456789abcdef",
        "model": "grok-4",
        "llm_base_url": "https://clawdet.example/llm/v1",
        "llm_api_key": pulumi.Output.secret(LLM_KEY),
        "gateway_token": pulumi.Output.secret(GATEWAY_TOKEN),
        "control_plane_ssh_cidrs": CONTROL_PLANE,
        "ssh_private_key": pulumi.Output.secret(PLATFORM_KEY),
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


def registered(**overrides) -> tuple[RecordingMocks, str]:
    """A fresh runtime holding one instance: what was registered and the instance's config hash.
    Secrets given in plain text are passed as the program gets them: as secret outputs."""
    recording = fresh_runtime()
    resolved = {}

    @pulumi.runtime.test
    def run():
        secrets = {"gateway_token", "llm_api_key", "ssh_private_key"} & set(overrides)
        args = instance_args(
            **(overrides | {name: pulumi.Output.secret(overrides[name]) for name in secrets})
        )
        instance = ClawInstance("instance", args)

        async def keep():
            resolved["config_hash"] = await instance.config_hash.future()

        app_layer = [instance.deploy.id, *release_ids(instance)] if instance.deploy else []
        return settled(instance.dns_record_ids, instance.volume_id, *app_layer, check=keep)

    run()
    return recording, resolved["config_hash"]


def wire_secret_value(value):
    assert isinstance(value, dict) and value.get(SECRET_SIGNATURE), f"not a secret: {value!r}"
    return value["value"]


def expected_app_files(**overrides) -> dict[str, str]:
    values = {
        "tier": "pro",
        "fqdn": "alice.clawdet.example",
        "openclaw_image": cloud_init.openclaw.OPENCLAW_IMAGE,
        "model": "grok-4",
        "llm_base_url": "https://clawdet.example/llm/v1",
        "gateway_token": GATEWAY_TOKEN,
        "llm_api_key": LLM_KEY,
    }
    return cloud_init.render_app_files(**(values | overrides))


def copies(mocks) -> dict[str, pulumi.runtime.MockResourceArgs]:
    """The CopyToRemote of each file of the app layer, by file name (one copy per file, all into
    the same release folder)."""
    by_file = {copy.inputs["remotePath"].rsplit("/", 1)[1]: copy for copy in mocks.of_type(COPY)}
    assert len(by_file) == len(mocks.of_type(COPY))
    assert {name: copy.name for name, copy in by_file.items()} == COPY_NAMES
    assert len({copy.inputs["remotePath"].rsplit("/", 1)[0] for copy in by_file.values()}) == 1
    return by_file


def uploaded_files(mocks) -> dict[str, str]:
    """The app layer the copies upload: each source a StringAsset; only the .env's (the instance's
    credentials) a secret."""
    files = {}
    for name, copy in copies(mocks).items():
        source = copy.inputs["source"]
        if name == cloud_init.ENV_FILE:
            source = wire_secret_value(source)
        else:
            assert not (isinstance(source, dict) and SECRET_SIGNATURE in source), f"{name} is a secret"
        assert isinstance(source, pulumi.StringAsset), (name, source)
        files[name] = source.text
    return files


def release_ids(instance: ClawInstance) -> list[pulumi.Output]:
    return [copy.id for copy in instance.release]


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
def test_an_instance_is_a_firewall_a_volume_a_server_its_app_layer_and_its_dns_records(mocks, tier, region):
    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args(tier=tier, region=region))

        def check():
            assert sorted(r.typ for r in mocks.resources) == sorted(
                [COMPONENT, FIREWALL, VOLUME, SERVER, ATTACHMENT, *[COPY] * 4, COMMAND, *[DNS_RECORD] * 2]
            )
            server = mocks.one(SERVER).inputs
            assert server["serverType"] == tiers.server_type_for(tier, region).name
            assert server["keepDisk"] is True  # a later, smaller type stays possible
            assert server["location"] == region
            assert server["image"] == "ubuntu-24.04"
            assert server["name"] == "alice"
            assert server["labels"] == {
                "managed-by": "clawdet",
                "clawdet-installation": "cd-test",
                "clawdet-instance-id": "inst_test",
                "clawdet-instance": "alice",
                "clawdet-user": "user_42",
                "clawdet-tier": tier,
            }
            assert [int(i) for i in server["firewallIds"]] == [int(FIREWALL_ID)]
            assert server["publicNets"] == [{"ipv4Enabled": True, "ipv6Enabled": True}]
            assert server["sshKeys"] == []
            assert mocks.requests["instance-server"].deleteBeforeReplace is True
            assert mocks.one(FIREWALL).inputs["labels"] == server["labels"]
            volume = mocks.one(VOLUME).inputs
            assert volume["name"] == "alice-data" and volume["location"] == region
            assert volume["size"] == tiers.TIERS[tier].volume_gb and volume["format"] == "ext4"
            assert volume["labels"] == server["labels"]
            attachment = mocks.one(ATTACHMENT).inputs
            assert (attachment["serverId"], attachment["volumeId"]) == (int(SERVER_ID), int(VOLUME_ID))
            assert attachment["automount"] is False
            assert f"/dev/disk/by-id/scsi-0HC_Volume_{VOLUME_ID}" in server["userData"]
            assert uploaded_files(mocks) == expected_app_files(tier=tier)

            records = {r.inputs["type"]: r.inputs for r in mocks.of_type(DNS_RECORD)}
            assert records["A"]["content"] == SERVER_IPV4
            assert records["AAAA"]["content"] == SERVER_IPV6
            for record in records.values():
                assert record["name"] == "alice.clawdet.example"
                assert record["zoneId"] == "0123456789abcdef0123456789abcdef"
                assert record["proxied"] is True
                assert record["ttl"] == 1

        return settled(
            instance.server_id,
            instance.dns_record_ids,
            instance.volume_attachment.id,
            instance.deploy.id,
            *release_ids(instance),
            check=check,
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


# --- the app layer, pushed over SSH ------------------------------------------------------------


def test_the_release_is_uploaded_then_deployed_again_on_every_new_server(mocks):
    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args(restarts="4"))

        async def check():
            config = await instance.config_hash.future()
            assert config == cloud_init.config_hash(expected_app_files())
            release = cloud_init.release_dir(config, "4")
            by_file, deploy = copies(mocks), mocks.one(COMMAND).inputs
            assert list(by_file) == list(cloud_init.APP_FILES)  # the compose file is uploaded last
            for name, copy in by_file.items():
                assert copy.inputs["remotePath"] == f"{release}/{name}"
            device = f"/dev/disk/by-id/scsi-0HC_Volume_{VOLUME_ID}"
            assert deploy["create"] == cloud_init.deploy_command(release, device)
            # A new server (a new id) or a new connection gets the release again, then deploys it.
            for resource in (*(copy.inputs for copy in by_file.values()), deploy):
                assert resource["triggers"] == [SERVER_ID, "22", PUBLIC_KEY]
                connection = wire_secret_value(resource["connection"])
                assert connection["host"] == SERVER_IPV4 and connection["user"] == "root"
                assert connection["port"] == 22 and connection["privateKey"] == PLATFORM_KEY
            # Live only after every upload and with the customer's volume attached.
            assert {*COPY_NAMES.values(), "instance-volume-attachment"} <= mocks.depends_on("instance-deploy")
            for name in COPY_NAMES.values():
                assert "instance-server" in mocks.depends_on(name)
            assert mocks.requests["instance-deploy"].customTimeouts.create == "15m"

        return settled(instance.deploy.id, *release_ids(instance), check=check)

    run()


CHANGED_BY = [
    {"gateway_token": "gw-" + "8e" * 20},
    {"llm_api_key": "clw-instance-key-rotated-4567"},
    {"model": "grok-4-fast"},
    {"openclaw_image": "ghcr.io/openclaw/openclaw:2026.9.9"},
    {"tier": "free"},
    {"tier": "enterprise"},
]
NOT_CHANGED_BY = [
    {"restarts": "1"},
    {"region": "fsn1"},
    {"ssh_port": "2222"},
    {"operator_ssh_cidrs": ("198.51.100.0/24",)},
    {"control_plane_ssh_cidrs": ("192.0.2.128/25",)},
    {"ssh_private_key": ssh_keys.generate()},
    {"ssh_keys": ("ops",)},
    {"server_image": "ubuntu-22.04"},
    {"ipv6": False, "proxied": False},
    {"instance_name": "alice-2", "user_id": "user_43"},
    {"paused": True, "paused_page_ipv4": PAUSED_PAGE_IPV4},
]


@pytest.mark.usefixtures("mocks")
def test_the_config_hash_follows_the_credentials_the_model_the_image_and_the_tier_only():
    _, base = registered()
    assert base == cloud_init.config_hash(expected_app_files())
    changed = [registered(**overrides)[1] for overrides in CHANGED_BY]
    assert base not in changed and len(set(changed)) == len(changed)
    for overrides in NOT_CHANGED_BY:
        assert registered(**overrides)[1] == base, f"{overrides} changed the config hash"


@pytest.mark.usefixtures("mocks")
def test_a_restart_is_a_new_release_folder_and_a_new_deploy_of_the_same_files():
    before, config = registered(restarts="0")
    after, same_config = registered(restarts="1")
    assert same_config == config
    assert uploaded_files(before) == uploaded_files(after)
    for recording, restarts in ((before, "0"), (after, "1")):
        release = cloud_init.release_dir(config, restarts)
        for name, copy in copies(recording).items():
            assert copy.inputs["remotePath"] == f"{release}/{name}"
    assert before.one(COMMAND).inputs["create"] != after.one(COMMAND).inputs["create"]


def connection_triggers(recording) -> dict[str, list]:
    """The triggers of every copy and of the deploy, by resource name."""
    resources = [*copies(recording).values(), recording.one(COMMAND)]
    return {resource.name: resource.inputs["triggers"] for resource in resources}


NEW_CONNECTION = [
    pytest.param({"ssh_port": "2222"}, [SERVER_ID, "2222", PUBLIC_KEY], id="ssh-port"),
    pytest.param({"ssh_private_key": ROTATED_KEY}, [SERVER_ID, "22", ROTATED_PUBLIC_KEY], id="ssh-key"),
]


@pytest.mark.usefixtures("mocks")
@pytest.mark.parametrize(("change", "triggers"), NEW_CONNECTION)
def test_a_new_connection_replaces_every_copy_and_the_deploy_together(change, triggers):
    # pulumi-command runs a Command's `create` again when its connection changes, but a copy does
    # not copy again: the deploy would find its release folder gone (it removes it). A new
    # connection therefore gives the copies and the deploy new triggers, which replace all of them.
    before, config = registered()
    after, same_config = registered(**change)
    assert same_config == config
    old, new = connection_triggers(before), connection_triggers(after)
    assert set(old) == set(new) == {*COPY_NAMES.values(), "instance-deploy"}
    assert all(value == [SERVER_ID, "22", PUBLIC_KEY] for value in old.values())
    assert all(value == triggers for value in new.values())
    # Only the triggers tell them apart: the release and the files are the same.
    assert uploaded_files(before) == uploaded_files(after)
    assert before.one(COMMAND).inputs["create"] == after.one(COMMAND).inputs["create"]
    for name, copy in copies(after).items():
        assert copy.inputs["remotePath"] == copies(before)[name].inputs["remotePath"]


@pytest.mark.usefixtures("mocks")
def test_the_same_connection_keeps_the_triggers():
    first, second = registered(), registered()
    assert connection_triggers(first[0]) == connection_triggers(second[0])


@pytest.mark.usefixtures("mocks")
def test_every_copy_source_is_one_the_pinned_pulumi_command_accepts():
    # pulumi-command 1.2.1 (pinned) refuses an AssetArchive source in Check ("archive must be a path
    # to a file or directory"); it takes a StringAsset, FileAsset or FileArchive.
    recording, _ = registered()
    assert len(recording.of_type(COPY)) == len(cloud_init.APP_FILES)
    for copy in recording.of_type(COPY):
        source = copy.inputs["source"]
        if isinstance(source, dict) and SECRET_SIGNATURE in source:
            source = wire_secret_value(source)
        assert isinstance(source, (pulumi.StringAsset, pulumi.FileAsset, pulumi.FileArchive)), source


# --- a paused instance -------------------------------------------------------------------------


@pytest.mark.usefixtures("mocks")
def test_a_paused_instance_keeps_its_volume_and_firewall_and_its_name_shows_the_paused_page():
    running, _ = registered(ipv6=True)
    paused, _ = registered(ipv6=True, paused=True, paused_page_ipv4=PAUSED_PAGE_IPV4)
    assert sorted(r.typ for r in paused.resources) == sorted([COMPONENT, FIREWALL, VOLUME, DNS_RECORD])
    assert not {SERVER, ATTACHMENT, COPY, COMMAND} & {r.typ for r in paused.resources}
    # The very same volume and firewall: pausing neither replaces nor changes them.
    for typ in (VOLUME, FIREWALL):
        assert paused.one(typ).name == running.one(typ).name
        assert paused.one(typ).inputs == running.one(typ).inputs
    (record,) = paused.of_type(DNS_RECORD)  # no AAAA: the paused page has no IPv6 here
    assert record.name == "instance-dns-a"  # the same record as while running, pointed elsewhere
    assert (record.inputs["type"], record.inputs["content"]) == ("A", PAUSED_PAGE_IPV4)
    assert record.inputs["name"] == "alice.clawdet.example"


# --- firewall ----------------------------------------------------------------------------------


def rules_by_port(mocks):
    rules = mocks.one(FIREWALL).inputs["rules"]
    assert all(rule["direction"] == "in" and rule["protocol"] == "tcp" for rule in rules)
    return {rule["port"]: rule["sourceIps"] for rule in rules}


def test_proxied_web_ports_accept_only_cloudflare_and_ssh_only_the_control_plane(mocks):
    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args(proxied=True))

        def check():
            ports = rules_by_port(mocks)
            assert set(ports) == {"22", "80", "443"}
            assert ports["80"] == ports["443"] == list(CLOUDFLARE_RANGES)
            assert "0.0.0.0/0" not in ports["443"]
            assert ports["22"] == list(CONTROL_PLANE)  # no operators: the control plane only

        return settled(instance.server_id, check=check)

    run()


def test_unproxied_web_ports_are_open_and_ssh_only_from_the_control_plane_and_operators(mocks):
    cidrs = ("198.51.100.0/24", "2001:db8:ff::/48")

    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args(proxied=False, operator_ssh_cidrs=cidrs))

        def check():
            ports = rules_by_port(mocks)
            assert set(ports) == {"22", "80", "443"}
            assert ports["22"] == [*CONTROL_PLANE, *cidrs]
            assert ports["80"] == ports["443"] == ["0.0.0.0/0", "::/0"]

        return settled(instance.server_id, check=check)

    run()


def test_the_ssh_rule_opens_the_ssh_port_to_the_union_of_the_networks(mocks):
    control_plane = ("192.0.2.0/28", "2001:db8:c::/48")
    operators = ("198.51.100.0/24", "192.0.2.0/28")  # one network in both lists

    @pulumi.runtime.test
    def run():
        instance = ClawInstance(
            "instance",
            instance_args(
                ssh_port="2222", control_plane_ssh_cidrs=control_plane, operator_ssh_cidrs=operators
            ),
        )

        def check():
            ports = rules_by_port(mocks)
            assert set(ports) == {"2222", "80", "443"}  # nothing on 22
            assert ports["2222"] == ["192.0.2.0/28", "2001:db8:c::/48", "198.51.100.0/24"]
            for resource in mocks.of_type(COPY) + mocks.of_type(COMMAND):  # it connects on that port
                assert wire_secret_value(resource.inputs["connection"])["port"] == 2222

        return settled(instance.server_id, instance.deploy.id, *release_ids(instance), check=check)

    run()


# --- secrets -----------------------------------------------------------------------------------


def test_user_data_has_no_secret_and_carries_only_the_platforms_public_key(mocks, monkeypatch):
    for name in ("CLAWDET_LLM_UPSTREAM_API_KEY", "XAI_API_KEY", "OPENAI_API_KEY", "LLM_API_KEY"):
        monkeypatch.setenv(name, UPSTREAM_KEY)

    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args())

        async def check():
            assert not await instance.server.user_data.is_secret()
            user_data = mocks.one(SERVER).inputs["userData"]
            assert isinstance(user_data, str) and user_data.startswith("#cloud-config\n")
            assert yaml.safe_load(user_data)["ssh_authorized_keys"] == [PUBLIC_KEY]
            for secret in (GATEWAY_TOKEN, LLM_KEY, UPSTREAM_KEY, "PRIVATE KEY"):
                assert secret not in user_data
            assert not any(line in user_data for line in PLATFORM_KEY.splitlines()[1:-1] if len(line) >= 40)

        return settled(instance.server_id, check=check)

    run()


def test_only_the_env_file_is_a_secret_and_the_files_carry_only_the_instance_credentials(mocks, monkeypatch):
    for name in ("CLAWDET_LLM_UPSTREAM_API_KEY", "XAI_API_KEY", "OPENAI_API_KEY", "LLM_API_KEY"):
        monkeypatch.setenv(name, UPSTREAM_KEY)

    @pulumi.runtime.test
    def run():
        instance = ClawInstance("instance", instance_args())

        async def check():
            files = uploaded_files(mocks)  # fails unless only the .env's source is a secret
            assert set(files) == APP_FILES
            assert files[".env"] == f"OPENCLAW_GATEWAY_TOKEN={GATEWAY_TOKEN}\nCLAWDET_LLM_API_KEY={LLM_KEY}\n"
            for name, content in files.items():
                assert UPSTREAM_KEY not in content and "PRIVATE KEY" not in content
                if name != ".env":
                    assert GATEWAY_TOKEN not in content and LLM_KEY not in content, name
            # The hash names the release in plain sight; the files behind it stay secret.
            assert not await instance.config_hash.is_secret()
            for resource in mocks.of_type(COPY) + mocks.of_type(COMMAND):
                assert wire_secret_value(resource.inputs["connection"])["privateKey"] == PLATFORM_KEY
                # The triggers are in plain sight: they carry the public key only.
                assert "PRIVATE KEY" not in repr(resource.inputs["triggers"])

        return settled(*release_ids(instance), instance.deploy.id, check=check)

    run()


# --- the entry point (stack config in, outputs out) ---------------------------------------------


def set_stack_config(**overrides):
    values = {
        "subdomain": "bob",
        "tier": "enterprise",
        "region": "nbg1",
        "installation_id": "cd-test",
        "instance_id": "inst_test",
        "user_id": "u-7",
        "base_domain": "clawdet.example",
        "cloudflare_zone_id": "fedcba9876543210fedcba9876543210",
        "model": "grok-4",
        "llm_base_url": "https://clawdet.example/llm/v1",
        "llm_api_key": LLM_KEY,
        "gateway_token": GATEWAY_TOKEN,
        "control_plane_ssh_cidrs": list(CONTROL_PLANE),
        "ssh_private_key": PLATFORM_KEY,
    }
    values.update(overrides)
    written = to_stack_config(**values)
    config = {name: text for name, (text, _) in written.items()}
    pulumi.runtime.set_all_config(config, [name for name, (_, secret) in written.items() if secret])
    return config


def recording_instances(monkeypatch) -> list[ClawInstance]:
    """The instances the entry point creates, so a test can wait for all of their resources (its
    outputs do not wait for the app layer's copies and deploy)."""
    created = []

    def record(*args, **kwargs):
        created.append(ClawInstance(*args, **kwargs))
        return created[-1]

    monkeypatch.setattr(entry_point, "ClawInstance", record)
    return created


def test_the_program_reads_the_stack_and_exports_plain_outputs(mocks, monkeypatch):
    monkeypatch.setenv("CLAWDET_LLM_UPSTREAM_API_KEY", UPSTREAM_KEY)
    set_stack_config()
    created = recording_instances(monkeypatch)

    @pulumi.runtime.test
    def run():
        outputs = entry_point.main()
        (instance,) = created

        async def check():
            for output in (instance.deploy.id, *release_ids(instance)):
                await output.future()
            resolved = {name: await output.future() for name, output in outputs.items()}
            files = uploaded_files(mocks)
            assert resolved == {
                OutputName.SERVER_ID: SERVER_ID,
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
                OutputName.CONFIG_HASH: cloud_init.config_hash(files),
                OutputName.OPENCLAW_IMAGE: cloud_init.openclaw.OPENCLAW_IMAGE,
            }
            for name, output in outputs.items():
                assert not await output.is_secret(), f"{name} should be a plain output"
            shown = repr(resolved)
            assert GATEWAY_TOKEN not in shown and LLM_KEY not in shown and "PRIVATE KEY" not in shown
            user_data = mocks.one(SERVER).inputs["userData"]
            assert UPSTREAM_KEY not in user_data and GATEWAY_TOKEN not in user_data
            assert all(UPSTREAM_KEY not in content for content in files.values())
            assert "browser:" in files["docker-compose.yml"]  # the enterprise compose file

        return settled(*outputs.values(), check=check)

    run()


def test_a_paused_program_exports_no_server_and_the_same_config(mocks):
    set_stack_config(paused=True, paused_page_ipv4=PAUSED_PAGE_IPV4)

    @pulumi.runtime.test
    def run():
        outputs = {name: pulumi.Output.from_input(value) for name, value in entry_point.main().items()}

        async def check():
            resolved = {name: await output.future() for name, output in outputs.items()}
            assert resolved[OutputName.SERVER_ID] is None and resolved[OutputName.SERVER_STATUS] == "paused"
            assert resolved[OutputName.IPV4] is None and resolved[OutputName.IPV6] is None
            assert resolved[OutputName.VOLUME_ID] == VOLUME_ID
            assert resolved[OutputName.DNS_RECORD_IDS] == ["rec-instance-dns-a"]
            assert resolved[OutputName.CONFIG_HASH] == cloud_init.config_hash(
                expected_app_files(tier="enterprise", fqdn="bob.clawdet.example")
            )
            assert mocks.one(DNS_RECORD).inputs["content"] == PAUSED_PAGE_IPV4
            assert not mocks.of_type(SERVER) and not mocks.of_type(COMMAND)

        return settled(*outputs.values(), check=check)

    run()


@pytest.mark.parametrize("plain", SECRET_FULL_NAMES)
def test_the_program_refuses_a_secret_stored_in_plain_text(mocks, plain):
    config = set_stack_config()
    pulumi.runtime.set_all_config(config, [name for name in SECRET_FULL_NAMES if name != plain])

    with pytest.raises(StackConfigError, match="stored in plain text") as caught:
        entry_point.main()
    assert set(caught.value.problems) == {plain}
    assert config[plain].splitlines()[0] not in str(caught.value)
    assert mocks.resources == []


@pytest.mark.parametrize("missing", ["clawdet:controlPlaneSshCidrs", "clawdet:sshPrivateKey"])
def test_the_program_names_a_missing_control_plane_network_or_ssh_key(mocks, missing):
    config = set_stack_config()
    del config[missing]
    pulumi.runtime.set_all_config(config, [name for name in SECRET_FULL_NAMES if name in config])

    with pytest.raises(StackConfigError, match=f"{missing}: is required") as caught:
        entry_point.main()
    assert set(caught.value.problems) == {missing}
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


def test_the_dns_record_registers_exactly_as_the_cloudflare_sdk_would(mocks):
    """The program declares its records without importing pulumi_cloudflare (2 s per `up`):
    same type, alias, provider version and properties on the wire as the SDK's resource."""
    import pulumi_cloudflare

    from programs.cloudflare_dns import DnsRecord

    values = {"zone_id": "0123456789abcdef0123456789abcdef", "name": "alice.clawdet.example", "type": "A"}
    values |= {"content": SERVER_IPV4, "proxied": True, "ttl": 1, "comment": "clawdet cd-test alice"}

    @pulumi.runtime.test
    def run():
        ours = DnsRecord("ours", **values)
        sdk = pulumi_cloudflare.DnsRecord("sdk", **values)

        def check():
            ours_request, sdk_request = mocks.requests["ours"], mocks.requests["sdk"]
            for field in ("type", "object", "version", "aliases", "pluginDownloadURL", "provider"):
                assert getattr(ours_request, field) == getattr(sdk_request, field), field
            assert ours_request.version and ours_request.aliases

        return settled(ours.id, sdk.id, check=check)

    run()
