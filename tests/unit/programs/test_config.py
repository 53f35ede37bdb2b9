"""The stack config declaration (programs/instance_config.py), names and the tier table.

No Pulumi engine needed: these run against plain values and a stand-in for pulumi.Config.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from programs import instance_config, naming, ssh_keys, tiers
from programs.instance_config import KEYS, StackConfigError, load, to_stack_config
from tests.fixtures import REPO

pytestmark = pytest.mark.usefixtures("current_event_loop")  # load() makes Pulumi outputs
GATEWAY_TOKEN = "gw-" + "a1" * 20
LLM_KEY = "clw-proxy-key-0123456789"
SSH_KEY = ssh_keys.generate()
CONTROL_PLANE = "192.0.2.0/28"


def valid_values(**overrides):
    values = {
        "subdomain": "alice",
        "tier": "pro",
        "region": "fsn1",
        "installation_id": "cd-test",
        "instance_id": "inst_test",
        "user_id": "user_42",
        "base_domain": "clawdet.example",
        "cloudflare_zone_id": "0123456789abcdef0123456789abcdef",
        "model": "grok-4",
        "llm_base_url": "https://clawdet.example/llm/v1",
        "llm_api_key": LLM_KEY,
        "gateway_token": GATEWAY_TOKEN,
        "control_plane_ssh_cidrs": [CONTROL_PLANE],
        "ssh_private_key": SSH_KEY,
    }
    values.update(overrides)
    return values


class FakeConfig:
    """Stands in for pulumi.Config("clawdet"): `get(key)` returns the stored text."""

    def __init__(self, stack_config: dict[str, tuple[str, bool]]):
        self.values = {name.split(":", 1)[1]: text for name, (text, _) in stack_config.items()}

    def get(self, key):
        return self.values.get(key)


def error_for(**overrides) -> StackConfigError:
    with pytest.raises(StackConfigError) as caught:
        to_stack_config(**valid_values(**overrides))
    return caught.value


# --- naming -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "a", "team-7", "x" * 63, "Bob"])
def test_valid_subdomains_are_accepted_and_lowercased(name):
    assert naming.validate_subdomain(name) == name.lower()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("-abc", "start and end"),
        ("abc-", "start and end"),
        ("a_b", "only contain"),
        ("a.b", "only contain"),
        ("x" * 64, "longer than 63"),
        ("xn--bcher-kva", "two hyphens"),
        ("www", "reserved"),
        ("API", "reserved"),
        ("admin", "reserved"),
        ("mail", "reserved"),
        ("app", "reserved"),
    ],
)
def test_invalid_subdomains_are_refused_with_a_plain_message(name, reason):
    with pytest.raises(ValueError, match=reason):
        naming.validate_subdomain(name)


@pytest.mark.parametrize("value", ["user_42", "u-1.a", "123", "A" * 63])
def test_label_values_follow_hetzner_rules(value):
    assert naming.validate_label_value(value) == value


@pytest.mark.parametrize("value", ["", "-x", "x-", "a b", "x" * 64, "ü"])
def test_bad_label_values_are_refused(value):
    with pytest.raises(ValueError, match="label value"):
        naming.validate_label_value(value)


@pytest.mark.parametrize("user_id", ["user_42", "u-1.a", "A" * 63])
def test_an_owner_label_is_the_user_id_when_that_is_a_label_value(user_id):
    assert naming.owner_label(user_id) == user_id


@pytest.mark.parametrize(
    "user_id", ["alice@example.com", "user 42", "x" * 64, "-x", "ü", "a\x00b", "a\ud800"]
)
def test_an_owner_label_maps_any_other_id_to_a_stable_valid_label(user_id):
    label = naming.owner_label(user_id)
    assert naming.validate_label_value(label) == label
    assert naming.owner_label(user_id) == label and naming.owner_label(user_id + "!") != label
    assert to_stack_config(**valid_values(user_id=label))["clawdet:userId"] == (label, False)


def test_names_are_importable_without_pulumi_or_side_effects():
    code = (
        "import sys; import programs.naming, programs.tiers, programs.instance_config; "
        "assert 'pulumi' not in sys.modules, 'pulumi was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


# --- writing: to_stack_config ------------------------------------------------------------------


def test_to_stack_config_writes_full_keys_with_secret_flags():
    written = to_stack_config(**valid_values(ssh_keys=["ops-key", "123"], operator_ssh_cidrs="198.51.100.7"))
    assert written["clawdet:subdomain"] == ("alice", False)
    assert written["clawdet:tier"] == ("pro", False)
    assert written["clawdet:region"] == ("fsn1", False)
    assert written["clawdet:sshKeys"] == ("ops-key,123", False)
    assert written["clawdet:operatorSshCidrs"] == ("198.51.100.7/32", False)
    assert written["clawdet:gatewayToken"] == (GATEWAY_TOKEN, True)
    assert written["clawdet:llmApiKey"] == (LLM_KEY, True)
    assert written["clawdet:sshPrivateKey"] == (SSH_KEY, True)
    assert written["clawdet:controlPlaneSshCidrs"] == (CONTROL_PLANE, False)
    assert {name for name, (_, secret) in written.items() if secret} == set(instance_config.SECRET_FULL_NAMES)
    assert all(isinstance(text, str) for text, _ in written.values())


def test_values_left_out_are_not_written_so_the_program_defaults_apply():
    written = to_stack_config(**valid_values(region=None))
    assert "clawdet:region" not in written
    assert "clawdet:openclawImage" not in written
    assert "clawdet:sshKeys" not in written
    assert not {"clawdet:sshPort", "clawdet:paused", "clawdet:pausedPageIpv4", "clawdet:restarts"} & set(
        written
    )
    args = load(FakeConfig(written))
    assert args.region == "hel1"
    assert (args.ssh_port, args.paused, args.paused_page_ipv4, args.restarts) == ("22", False, None, "0")
    assert args.openclaw_image == instance_config.DEFAULT_OPENCLAW_IMAGE
    assert args.instance_name == "alice"
    assert args.ipv6 is True and args.proxied is True


def test_booleans_are_written_as_pulumi_reads_them():
    written = to_stack_config(**valid_values(ipv6=False, proxied=True))
    assert written["clawdet:ipv6"] == ("false", False)
    assert written["clawdet:proxied"] == ("true", False)


def test_what_the_provisioner_writes_is_what_the_program_reads():
    values = valid_values(tier="Enterprise", region="sin", ipv6=False, operator_ssh_cidrs=["2001:db8::/48"])
    args = load(FakeConfig(to_stack_config(**values)))
    assert args.tier == "enterprise"
    assert args.region == "sin"
    assert args.ipv6 is False
    assert args.operator_ssh_cidrs == ("2001:db8::/48",)
    assert args.fqdn == "alice.clawdet.example"
    assert args.model == "grok-4"


def test_unknown_fields_are_refused_with_the_known_ones_listed():
    with pytest.raises(StackConfigError, match="known fields: subdomain, instance_name, tier") as caught:
        to_stack_config(**valid_values(teir="pro"))
    assert "teir" in caught.value.problems


@pytest.mark.parametrize(
    ("overrides", "key", "expected"),
    [
        ({"tier": "gold"}, "clawdet:tier", "allowed values: free, pro, enterprise"),
        ({"region": "mars"}, "clawdet:region", "allowed values: hel1, fsn1, nbg1, ash, hil, sin"),
        ({"subdomain": "www"}, "clawdet:subdomain", "reserved"),
        ({"subdomain": "no_underscores"}, "clawdet:subdomain", "letters a-z, digits and hyphens"),
        ({"cloudflare_zone_id": None}, "clawdet:cloudflareZoneId", "is required"),
        ({"cloudflare_zone_id": "clawdet.example"}, "clawdet:cloudflareZoneId", "not the zone name"),
        ({"tier": None}, "clawdet:tier", "allowed values: free, pro, enterprise"),
        ({"base_domain": "localhost"}, "clawdet:baseDomain", "not a valid domain"),
        ({"user_id": "user 42"}, "clawdet:userId", "label value"),
        ({"operator_ssh_cidrs": ["10.0.0.5/8"]}, "clawdet:operatorSshCidrs", "CIDR"),
        ({"openclaw_image": "ghcr.io/openclaw/openclaw:latest"}, "clawdet:openclawImage", "not pinned"),
        ({"openclaw_image": "ghcr.io/openclaw/openclaw"}, "clawdet:openclawImage", "not pinned"),
        ({"llm_base_url": "ftp://x.example"}, "clawdet:llmBaseUrl", "http(s) URL"),
        ({"ipv6": "yes"}, "clawdet:ipv6", "true or false"),
        ({"model": "grok 4"}, "clawdet:model", "model name"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(overrides, key, expected):
    error = error_for(**overrides)
    assert key in error.problems
    assert expected in error.problems[key]
    assert key in str(error) and expected in str(error)


def test_every_problem_is_reported_at_once():
    error = error_for(tier="gold", region="mars", cloudflare_zone_id=None)
    assert set(error.problems) == {"clawdet:tier", "clawdet:region", "clawdet:cloudflareZoneId"}


def test_a_missing_secret_says_how_to_set_it_as_a_secret():
    error = error_for(gateway_token=None)
    assert "pulumi config set --secret clawdet:gatewayToken" in error.problems["clawdet:gatewayToken"]


def test_a_bad_secret_is_refused_without_echoing_it():
    leaked = "too short $ecret"
    error = error_for(gateway_token=leaked)
    assert "clawdet:gatewayToken" in error.problems
    assert leaked not in str(error) and "$ecret" not in str(error)


def test_an_overlong_name_is_refused():
    error = error_for(subdomain="a" * 63, base_domain=".".join(["b" * 63] * 3))
    assert "longer than 253" in error.problems["clawdet:subdomain"]


def test_a_digest_pinned_image_is_accepted():
    image = "ghcr.io/openclaw/openclaw@sha256:" + "0" * 64
    assert to_stack_config(**valid_values(openclaw_image=image))["clawdet:openclawImage"] == (image, False)


DIGEST = "@sha256:" + "4b" * 32


def test_caddy_and_browser_images_are_set_per_stack_and_pinned_like_the_gateways():
    images = {
        "caddy_image": "caddy:2.11.4-alpine" + DIGEST,
        "browser_image": "chromedp/headless-shell:148" + DIGEST,
    }
    written = to_stack_config(**valid_values(**images))
    assert written["clawdet:caddyImage"] == (images["caddy_image"], False)
    assert written["clawdet:browserImage"] == (images["browser_image"], False)
    args = load(FakeConfig(written))
    assert (args.caddy_image, args.browser_image) == (images["caddy_image"], images["browser_image"])
    assert {"clawdet:caddyImage", "clawdet:browserImage"} <= instance_config.APP_LAYER_KEYS  # in place
    assert "not pinned" in error_for(caddy_image="caddy:latest").problems["clawdet:caddyImage"]
    assert "not pinned" in error_for(browser_image="chromedp/headless-shell").problems["clawdet:browserImage"]


@pytest.mark.parametrize(
    "image", ["ghcr.io/openclaw/openclaw:2026.9.6" + DIGEST, "ghcr.io/openclaw/openclaw" + DIGEST]
)
def test_an_image_pinned_by_digest_is_what_real_servers_accept(image):
    assert instance_config.digest_pinned_image(image, "OPENCLAW_IMAGE") == image


@pytest.mark.parametrize("image", ["caddy:2.11.4-alpine", "caddy:latest", "caddy"])
def test_an_image_pinned_by_tag_alone_is_refused_naming_the_setting_and_how_to_get_the_digest(image):
    with pytest.raises(ValueError) as refused:
        instance_config.digest_pinned_image(image, "CADDY_IMAGE")
    message = str(refused.value)
    assert "CADDY_IMAGE" in message and image in message
    assert "docker buildx imagetools inspect" in message and "crane digest" in message


# --- reading: load -----------------------------------------------------------------------------


def test_load_reads_json_lists_as_a_yaml_list_in_the_stack_file_arrives():
    written = to_stack_config(**valid_values())
    config = FakeConfig(written)
    config.values["sshKeys"] = '["ops", "4711"]'
    config.values["operatorSshCidrs"] = "203.0.113.0/24, 2001:db8::/32"
    args = load(config)
    assert args.ssh_keys == ("ops", "4711")
    assert args.operator_ssh_cidrs == ("203.0.113.0/24", "2001:db8::/32")


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("tier", "gold", "allowed values: free, pro, enterprise"),
        ("region", "eu-central", "allowed values: hel1, fsn1, nbg1, ash, hil, sin"),
        ("subdomain", "admin", "reserved"),
        ("cloudflareZoneId", "", "is required"),
        ("proxied", "maybe", "true or false"),
    ],
)
def test_load_names_the_bad_key_and_the_allowed_values(key, text, expected):
    config = FakeConfig(to_stack_config(**valid_values()))
    config.values[key] = text
    with pytest.raises(StackConfigError) as caught:
        load(config)
    assert f"clawdet:{key}" in str(caught.value)
    assert expected in caught.value.problems[f"clawdet:{key}"]


@pytest.mark.parametrize("plain", instance_config.SECRET_FULL_NAMES)
def test_load_refuses_a_secret_stored_in_plain_text(plain):
    written = to_stack_config(**valid_values())
    config = FakeConfig(written)
    encrypted = set(instance_config.SECRET_FULL_NAMES) - {plain}
    with pytest.raises(StackConfigError, match=f"set --secret {plain}") as caught:
        load(config, secret_keys=encrypted)
    assert set(caught.value.problems) == {plain}
    assert written[plain][0].splitlines()[0] not in str(caught.value)
    load(config, secret_keys=set(instance_config.SECRET_FULL_NAMES))  # all encrypted: fine


def test_unknown_keys_in_the_namespace_are_found():
    present = ["clawdet:tier", "clawdet:teir", "hcloud:token", "cloudflare:baseUrl"]
    assert instance_config.unknown_keys(present) == ["clawdet:teir"]


def test_every_key_is_declared_once_with_a_field_of_the_args():
    names = [key.name for key in KEYS]
    fields = [key.field for key in KEYS]
    assert len(set(names)) == len(names) and len(set(fields)) == len(fields)
    args_fields = {
        f.name for f in instance_config.dataclasses.fields(instance_config.ClawInstanceArgs) if f.init
    }
    assert set(fields) == args_fields
    assert {key.full_name for key in KEYS if key.secret} == {
        "clawdet:gatewayToken",
        "clawdet:llmApiKey",
        "clawdet:sshPrivateKey",
    }


# --- the tier table ----------------------------------------------------------------------------


@pytest.mark.parametrize("tier", tiers.TIER_NAMES)
@pytest.mark.parametrize("location", tiers.LOCATIONS)
def test_every_tier_has_a_server_at_every_location_and_its_containers_fit(tier, location):
    server_type = tiers.server_type_for(tier, location)
    assert location in server_type.locations
    limits = tiers.TIERS[tier]
    containers = [limits.gateway, limits.proxy] + ([limits.browser] if limits.browser else [])
    os_reserve_mb = 512
    assert sum(c.memory_mb for c in containers) <= server_type.memory_gb * 1024 - os_reserve_mb
    assert sum(float(c.cpus) for c in containers) <= server_type.vcpus
    assert server_type.monthly_eur > 0 and server_type.hourly_eur > 0
    assert tiers.monthly_cost_eur(tier, location) == server_type.monthly_eur


def test_tiers_follow_the_seed_in_the_eu():
    assert tiers.server_type_for("free", "hel1").name == "cx23"
    assert tiers.server_type_for("pro", "hel1").name == "cx23"
    assert tiers.server_type_for("enterprise", "hel1").name == "cpx32"
    assert tiers.server_type_for("pro", "ash").name == "cpx22"  # cx23 is not sold outside the EU
    assert tiers.TIERS["enterprise"].browser is not None
    assert tiers.TIERS["pro"].browser is None
    free, pro = tiers.TIERS["free"].gateway, tiers.TIERS["pro"].gateway
    assert free.memory_mb < pro.memory_mb and float(free.cpus) < float(pro.cpus)


def test_the_args_never_show_their_secrets():
    for args in (
        load(FakeConfig(to_stack_config(**valid_values()))),
        instance_config.ClawInstanceArgs(**valid_values()),
    ):
        shown = repr(args)
        assert GATEWAY_TOKEN not in shown and LLM_KEY not in shown
        assert "PRIVATE KEY" not in shown and SSH_KEY.splitlines()[2] not in shown


def test_empty_values_count_as_left_out():
    written = to_stack_config(**valid_values(region="", ssh_keys=[], instance_name=""))
    assert not {"clawdet:region", "clawdet:sshKeys", "clawdet:instanceName"} & set(written)


# --- the platform's SSH access, pausing and restarts -------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key", "expected"),
    [
        ({"control_plane_ssh_cidrs": None}, "clawdet:controlPlaneSshCidrs", "is required"),
        ({"control_plane_ssh_cidrs": ["192.0.2.1/24"]}, "clawdet:controlPlaneSshCidrs", "CIDR"),
        (
            {"ssh_private_key": None},
            "clawdet:sshPrivateKey",
            "pulumi config set --secret clawdet:sshPrivateKey",
        ),
        ({"ssh_port": "0"}, "clawdet:sshPort", "TCP port"),
        ({"ssh_port": "65536"}, "clawdet:sshPort", "TCP port"),
        ({"ssh_port": "ssh"}, "clawdet:sshPort", "TCP port"),
        ({"paused": True}, "clawdet:pausedPageIpv4", "is required while paused"),
        ({"paused": "yes"}, "clawdet:paused", "true or false"),
        ({"paused_page_ipv4": "2001:db8::1"}, "clawdet:pausedPageIpv4", "IPv4"),
        ({"restarts": "-1"}, "clawdet:restarts", "whole number"),
        ({"restarts": "two"}, "clawdet:restarts", "whole number"),
    ],
)
def test_the_new_keys_name_themselves_when_missing_or_bad(overrides, key, expected):
    error = error_for(**overrides)
    assert set(error.problems) == {key}
    assert expected in error.problems[key]


@pytest.mark.parametrize("empty", [[], (), ",", " ", " , ,"])
def test_an_empty_list_of_control_plane_networks_is_missing(empty):
    # Otherwise to_stack_config would leave the key out, and load() would refuse that stack.
    error = error_for(control_plane_ssh_cidrs=empty)
    assert set(error.problems) == {"clawdet:controlPlaneSshCidrs"}
    assert "is required" in error.problems["clawdet:controlPlaneSshCidrs"]
    assert "clawdet:controlPlaneSshCidrs" in str(error)


def test_a_missing_control_plane_network_or_ssh_key_is_named_when_the_program_loads():
    written = to_stack_config(**valid_values())
    config = FakeConfig(written)
    del config.values["controlPlaneSshCidrs"], config.values["sshPrivateKey"]
    with pytest.raises(StackConfigError) as caught:
        load(config)
    assert set(caught.value.problems) == {"clawdet:controlPlaneSshCidrs", "clawdet:sshPrivateKey"}
    assert "clawdet:controlPlaneSshCidrs" in str(caught.value) and "clawdet:sshPrivateKey" in str(
        caught.value
    )


def test_paused_needs_the_paused_pages_address_and_keeps_it():
    error = error_for(paused=True, paused_page_ipv4=None)
    assert "clawdet:pausedPageIpv4" in str(error)
    written = to_stack_config(**valid_values(paused=True, paused_page_ipv4="198.51.100.80"))
    assert written["clawdet:paused"] == ("true", False)
    assert written["clawdet:pausedPageIpv4"] == ("198.51.100.80", False)
    args = load(FakeConfig(written))
    assert args.paused is True and args.paused_page_ipv4 == "198.51.100.80"
    config = FakeConfig(written)
    del config.values["pausedPageIpv4"]
    with pytest.raises(StackConfigError) as caught:
        load(config)
    assert set(caught.value.problems) == {"clawdet:pausedPageIpv4"}


def test_ssh_port_restarts_and_control_plane_networks_round_trip():
    values = valid_values(
        ssh_port="2222", restarts="07", control_plane_ssh_cidrs="192.0.2.0/28, 2001:db8:c::/48"
    )
    written = to_stack_config(**values)
    assert written["clawdet:sshPort"] == ("2222", False)
    assert written["clawdet:restarts"] == ("7", False)
    assert written["clawdet:controlPlaneSshCidrs"] == ("192.0.2.0/28,2001:db8:c::/48", False)
    args = load(FakeConfig(written))
    assert (args.ssh_port, args.restarts) == ("2222", "7")
    assert args.control_plane_ssh_cidrs == ("192.0.2.0/28", "2001:db8:c::/48")


def test_the_ssh_key_is_read_back_as_a_secret_whatever_its_line_breaks():
    """`pulumi config set` may hold the key with escaped line breaks: the key is the same."""
    escaped = SSH_KEY.strip().replace("\n", "\\n")
    for stored in (SSH_KEY, escaped, SSH_KEY.strip()):
        config = FakeConfig(to_stack_config(**valid_values()))
        config.values["sshPrivateKey"] = stored
        args = load(config, secret_keys=set(instance_config.SECRET_FULL_NAMES))

        async def check(args=args):
            assert await args.ssh_private_key.is_secret()
            key = await args.ssh_private_key.future()
            assert key == SSH_KEY and ssh_keys.public_key(key) == ssh_keys.public_key(SSH_KEY)

        asyncio.get_event_loop().run_until_complete(check())


@pytest.mark.parametrize(
    "bad",
    [
        "SECRET-not-a-key",
        SSH_KEY.replace("OPENSSH PRIVATE KEY", "RSA PRIVATE KEY"),
        SSH_KEY.replace(SSH_KEY.splitlines()[2], SSH_KEY.splitlines()[2][:20] + "$ECRET!" + "A" * 20),
        ssh_keys.public_key(SSH_KEY),
    ],
    ids=["text", "pem-rsa-armour", "bad-characters", "public-key"],
)
def test_an_invalid_ssh_key_is_refused_without_echoing_it(bad):
    error = error_for(ssh_private_key=bad)
    assert set(error.problems) == {"clawdet:sshPrivateKey"}
    assert "OpenSSH format" in error.problems["clawdet:sshPrivateKey"]
    shown = str(error)
    assert "SECRET" not in shown and "$ECRET" not in shown and "ssh-ed25519" not in shown
    assert not any(line in shown for line in bad.splitlines() if len(line) > 8)
    config = FakeConfig(to_stack_config(**valid_values()))
    config.values["sshPrivateKey"] = bad
    with pytest.raises(StackConfigError) as caught:
        load(config, secret_keys=set(instance_config.SECRET_FULL_NAMES))
    assert set(caught.value.problems) == {"clawdet:sshPrivateKey"}
    assert not any(line in str(caught.value) for line in bad.splitlines() if len(line) > 8)


def with_body_line(line: int, replacement: str) -> str:
    """The platform's key with one line of its body replaced: still OpenSSH armour and base64."""
    return SSH_KEY.replace(SSH_KEY.splitlines()[line], replacement)


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (with_body_line(2, "SECRETSECRET" * 5), "not a private key in OpenSSH format"),  # unknown key type
        (with_body_line(1, "SECRETSECRET" * 5), "not a private key in OpenSSH format"),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
            .decode(),
            "must be an ed25519 key",
        ),
    ],
    ids=["garbled-key-type", "garbled-header", "rsa"],
)
def test_a_key_in_openssh_armour_that_does_not_load_as_ed25519_is_refused_without_echoing_it(bad, problem):
    error = error_for(ssh_private_key=bad)  # the check loads the key, it does not only read its armour
    assert set(error.problems) == {"clawdet:sshPrivateKey"}
    assert problem in error.problems["clawdet:sshPrivateKey"]
    shown = str(error)
    assert "SECRET" not in shown and "Unsupported key type" not in shown
    assert not any(line in shown for line in bad.splitlines() if len(line) > 8)
