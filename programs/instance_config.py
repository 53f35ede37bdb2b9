"""The stack configuration of one customer instance, declared once.

Every `clawdet:` key the program reads is declared in KEYS below. The program reads a stack
with `load(pulumi.Config("clawdet"))`; the provisioner writes one with `to_stack_config(...)`.
Both go through the same declaration, so they cannot disagree.

Importable without a Pulumi engine: only `load` touches pulumi (to mark secrets).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from programs import naming, openclaw, ssh_keys, tiers
from programs.cloud_init import BROWSER_IMAGE, CADDY_IMAGE

if TYPE_CHECKING:
    import pulumi

NAMESPACE = "clawdet"
DEFAULT_SERVER_IMAGE = "ubuntu-24.04"
# Pinned: a new OpenClaw release is rolled out by changing this (or clawdet:openclawImage).
DEFAULT_OPENCLAW_IMAGE = openclaw.OPENCLAW_IMAGE

_ENV_SAFE = r"A-Za-z0-9._~+/=:\-"  # no whitespace, quotes, '$' or '#': values go into a .env file


class StackConfigError(ValueError):
    """Bad stack config. `problems` maps each full key (clawdet:...) to what is wrong with it."""

    def __init__(self, problems: Mapping[str, str]):
        self.problems = dict(problems)
        lines = "\n".join(f"  {key}: {message}" for key, message in self.problems.items())
        super().__init__(f"invalid stack configuration:\n{lines}")


# --- value checks (each returns the normalised value or raises ValueError) ---------------------


def _zone_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ValueError(
            "must be the zone's id (32 hex characters on Cloudflare, shown on the zone's "
            "overview page), not the zone name"
        )
    return value


def _server_image(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", value):
        raise ValueError(f"{value!r} is not a Hetzner image name or id such as 'ubuntu-24.04'")
    return value


def _pool_ids(value: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]{0,18},[1-9][0-9]{0,18},[1-9][0-9]{0,18}", value):
        raise ValueError(f"{value!r} is not '<serverId>,<volumeId>,<firewallId>' (Hetzner ids)")
    return value


def _ssh_key(value: str) -> str:
    if not value or "," in value or len(value) > 128 or not value.isprintable():
        raise ValueError(f"{value!r} is not a Hetzner SSH key id or name")
    return value


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise ValueError(f"{value!r} is not a network in CIDR form such as '203.0.113.0/24'") from None


_IMAGE_REF = re.compile(
    r"(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?P<tag>:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?P<digest>@sha256:[0-9a-f]{64})?"
)


def pinned_image(value: str) -> str:
    match = _IMAGE_REF.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not a container image reference")
    tag, digest = match.group("tag"), match.group("digest")
    if not digest and (not tag or tag == ":latest"):
        raise ValueError(f"{value!r} is not pinned: give a version tag or an @sha256 digest")
    return value


def digest_pinned_image(value: str, setting: str) -> str:
    """`value` pinned by digest (`name:tag@sha256:<64 hex>`), as real servers must pull it: a tag
    can be moved to other bytes by whoever controls the registry. `setting` is what to change."""
    match = _IMAGE_REF.fullmatch(value)
    if match and match.group("digest"):
        return value
    raise ValueError(
        f"{setting} is {value}, not pinned by digest: real servers run only images pinned as "
        f"name:tag@sha256:<digest>. Set {setting} to {value}@sha256:<digest>, with the digest from "
        f"`docker buildx imagetools inspect {value}` or `crane digest {value}`"
    )


def _model(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}", value):
        raise ValueError(f"{value!r} is not a model name such as 'grok-4'")
    return value


def _url(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not re.fullmatch(rf"[{_ENV_SAFE}%?&@!*,;]+", value)
    ):
        raise ValueError(f"{value!r} is not an http(s) URL (without spaces, quotes, '$' or '#')")
    return value


def _secret_token(min_length: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        # Never echo the value: it is a secret.
        if not re.fullmatch(rf"[{_ENV_SAFE}]{{{min_length},512}}", value):
            raise ValueError(
                f"must be {min_length}-512 characters of letters, digits and . _ ~ + / = : - "
                "(the value is not shown because it is secret)"
            )
        return value

    return check


def _ssh_private_key(value: str) -> str:
    # Never echo the value: it is a secret.
    text = value.replace("\\n", "\n").strip() + "\n"
    pem = r"-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END OPENSSH PRIVATE KEY-----\n"
    if not re.fullmatch(pem, text):
        raise ValueError(
            "must be a private key in OpenSSH format without a passphrase (ssh-keygen -t ed25519 -N ''); "
            "the value is not shown because it is secret"
        )
    ssh_keys.public_key(text)  # an ed25519 key that loads; its error never shows the key
    return text


def _ssh_source(value: str) -> str:
    network = _cidr(value)
    if network.endswith("/0"):
        raise ValueError(f"{value!r} is every address: SSH is never opened to the world")
    return network


def _port(value: str) -> str:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"{value!r} is not a TCP port (1-65535)")
    return str(int(value))


def _count(value: str) -> str:
    if not value.isdigit():
        raise ValueError(f"{value!r} is not a whole number")
    return str(int(value))


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _label_value(value: str) -> str:
    return naming.validate_label_value(value)


# --- the declaration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigKey:
    name: str  # the key inside the clawdet namespace, camelCase like Pulumi's own keys
    field: str  # the ClawInstanceArgs field and the to_stack_config keyword
    doc: str
    kind: str = "text"  # "text", "bool" or "list" (a list is written comma-separated)
    required: bool = False
    default: Any = None
    secret: bool = False
    allowed: tuple[str, ...] = ()
    check: Callable[[str], str] | None = None  # validates one text value (one item of a list)

    @property
    def full_name(self) -> str:
        return f"{NAMESPACE}:{self.name}"

    def normalize(self, value: Any) -> Any:
        """Validate a typed value (str, bool or sequence of str); ValueError when bad."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{value!r} is not a boolean; use true or false")
            return value
        if self.kind == "list":
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, Iterable) or isinstance(items, (bytes, Mapping)):
                raise ValueError(f"{value!r} is not a list")
            cleaned = [self._check_text(str(item).strip()) for item in items if str(item).strip()]
            return tuple(dict.fromkeys(cleaned))
        if not isinstance(value, str):
            raise ValueError(f"must be text, not {type(value).__name__}")
        return self._check_text(value.strip())

    def parse(self, text: str) -> Any:
        """Validate a value as it is stored in the stack file (always text)."""
        if self.kind == "bool":
            lowered = text.strip().lower()
            if lowered not in ("true", "false"):
                raise ValueError(f"{text!r} is not a boolean; use true or false")
            return lowered == "true"
        if self.kind == "list" and text.strip().startswith("["):
            # A YAML list in the stack file reaches the program as JSON.
            try:
                return self.normalize(json.loads(text))
            except json.JSONDecodeError:
                raise ValueError(f"{text!r} is neither a JSON list nor comma-separated") from None
        return self.normalize(text)

    def encode(self, value: Any) -> str:
        if self.kind == "bool":
            return "true" if value else "false"
        if self.kind == "list":
            return ",".join(value)
        return value

    def _check_text(self, text: str) -> str:
        if self.allowed:
            if text.lower() not in self.allowed:
                shown = "(hidden)" if self.secret else repr(text)
                raise ValueError(f"{shown} is not allowed; allowed values: {', '.join(self.allowed)}")
            text = text.lower()
        return self.check(text) if self.check else text


KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(
        "subdomain",
        "subdomain",
        "the instance answers at https://<subdomain>.<baseDomain>",
        required=True,
        check=naming.validate_subdomain,
    ),
    ConfigKey(
        "instanceName",
        "instance_name",
        "server and firewall name and the clawdet-instance label (default: the subdomain)",
        check=naming.validate_hostname_label,
    ),
    ConfigKey(
        "tier",
        "tier",
        "free, pro or enterprise: server type and container limits",
        required=True,
        allowed=tiers.TIER_NAMES,
    ),
    ConfigKey(
        "region",
        "region",
        "Hetzner location of the server",
        default=tiers.DEFAULT_LOCATION,
        allowed=tiers.LOCATIONS,
    ),
    ConfigKey(
        "installationId",
        "installation_id",
        "the platform installation's id (the clawdet-installation label, on every resource; "
        "stacks written before it have none until a worker converges them)",
        check=_label_value,
    ),
    ConfigKey(
        "instanceId",
        "instance_id",
        "the instance's id in the platform's database (the clawdet-instance-id label)",
        check=_label_value,
    ),
    ConfigKey(
        "userId", "user_id", "the owner's user id (the clawdet-user label)", required=True, check=_label_value
    ),
    ConfigKey(
        "baseDomain",
        "base_domain",
        "the Cloudflare zone the instance's name lives in",
        required=True,
        check=naming.validate_domain,
    ),
    ConfigKey(
        "cloudflareZoneId",
        "cloudflare_zone_id",
        "the Cloudflare zone id of baseDomain",
        required=True,
        check=_zone_id,
    ),
    ConfigKey(
        "proxied",
        "proxied",
        "record proxied by Cloudflare (then 80/443 accept only Cloudflare's addresses)",
        kind="bool",
        default=True,
    ),
    ConfigKey(
        "ipv6",
        "ipv6",
        "give the server an IPv6 address and publish an AAAA record",
        kind="bool",
        default=True,
    ),
    ConfigKey(
        "serverImage",
        "server_image",
        "Hetzner image of the server",
        default=DEFAULT_SERVER_IMAGE,
        check=_server_image,
    ),
    ConfigKey(
        "goldenImage",
        "golden_image",
        "serverImage is a golden snapshot (Docker and the pinned images on it): cloud-init only configures",
        kind="bool",
        default=False,
    ),
    ConfigKey(
        "poolMember",
        "pool_member",
        "this stack is a warm-pool member with this id: firewall, volume and a booted server only "
        "(no DNS record, no app layer), for an instance to adopt",
        check=_label_value,
    ),
    ConfigKey(
        "adoptFromPool",
        "adopt_from_pool",
        "the warm-pool member this instance adopts in its next `up` (the engine imports them): "
        "'<serverId>,<volumeId>,<firewallId>'; cleared once adopted",
        check=_pool_ids,
    ),
    ConfigKey(
        "adopted",
        "adopted",
        "what of it came from the warm pool and is still the adopted one (server, volume): what the "
        "API never reads back is not compared (a server's userData and sshKeys, a volume's format)",
        kind="list",
        default=(),
        allowed=("server", "volume"),
    ),
    ConfigKey(
        "sshKeys",
        "ssh_keys",
        "Hetzner SSH key ids or names for root (comma-separated)",
        kind="list",
        default=(),
        check=_ssh_key,
    ),
    ConfigKey(
        "operatorSshCidrs",
        "operator_ssh_cidrs",
        "networks allowed to reach port 22 (comma-separated CIDRs; none: SSH closed)",
        kind="list",
        default=(),
        check=_cidr,
    ),
    ConfigKey(
        "controlPlaneSshCidrs",
        "control_plane_ssh_cidrs",
        "networks the control plane connects from to push changes in place (comma-separated CIDRs); "
        "port 22 opens only to them and to operatorSshCidrs",
        kind="list",
        required=True,
        check=_ssh_source,
    ),
    ConfigKey("sshPort", "ssh_port", "the servers' SSH port", default="22", check=_port),
    ConfigKey(
        "sshPrivateKey",
        "ssh_private_key",
        "the platform's SSH key (OpenSSH format) that pushes the app layer; root accepts its public key",
        required=True,
        secret=True,
        check=_ssh_private_key,
    ),
    ConfigKey(
        "paused",
        "paused",
        "paused: no server (the volume and firewall stay), the name shows the platform's paused page",
        kind="bool",
        default=False,
    ),
    ConfigKey(
        "pausedPageIpv4",
        "paused_page_ipv4",
        "where the name points while paused: the platform's own address",
        check=_ipv4,
    ),
    ConfigKey(
        "restarts",
        "restarts",
        "raise it by one to restart the containers (the app layer is deployed again)",
        default="0",
        check=_count,
    ),
    ConfigKey(
        "openclawImage",
        "openclaw_image",
        "OpenClaw gateway container image, pinned",
        default=DEFAULT_OPENCLAW_IMAGE,
        check=pinned_image,
    ),
    ConfigKey(
        "caddyImage", "caddy_image", "Caddy container image, pinned", default=CADDY_IMAGE, check=pinned_image
    ),
    ConfigKey(
        "browserImage",
        "browser_image",
        "headless Chromium container image of the enterprise tier, pinned",
        default=BROWSER_IMAGE,
        check=pinned_image,
    ),
    ConfigKey("model", "model", "the model the gateway asks the LLM proxy for", required=True, check=_model),
    ConfigKey(
        "llmBaseUrl",
        "llm_base_url",
        "this instance's URL of the platform's LLM proxy",
        required=True,
        check=_url,
    ),
    ConfigKey(
        "llmApiKey",
        "llm_api_key",
        "this instance's own LLM proxy key (never the upstream key)",
        required=True,
        secret=True,
        check=_secret_token(16),
    ),
    ConfigKey(
        "gatewayToken",
        "gateway_token",
        "the token clients present to the gateway",
        required=True,
        secret=True,
        check=_secret_token(32),
    ),
)
KEYS_BY_FIELD = {key.field: key for key in KEYS}
FULL_NAMES = tuple(key.full_name for key in KEYS)
# Keys that reach only the app layer (the files pushed over SSH): alone, a change of them never
# touches the server, its volume, its firewall or its DNS record.
APP_LAYER_KEYS = frozenset(
    f"{NAMESPACE}:{name}"
    for name in (
        "openclawImage",
        "caddyImage",
        "browserImage",
        "model",
        "llmBaseUrl",
        "llmApiKey",
        "gatewayToken",
        "restarts",
    )
)
SECRET_FULL_NAMES = tuple(key.full_name for key in KEYS if key.secret)


class OutputName:
    """Names of the stack outputs (the provisioner reads them)."""

    SERVER_ID = "serverId"
    VOLUME_ID = "volumeId"
    SERVER_STATUS = "serverStatus"
    IPV4 = "ipv4Address"
    IPV6 = "ipv6Address"
    DNS_RECORD_IDS = "dnsRecordIds"
    FQDN = "fqdn"
    URL = "url"
    TIER = "tier"
    REGION = "region"
    SERVER_TYPE = "serverType"
    CONFIG_HASH = "configHash"
    OPENCLAW_IMAGE = "openclawImage"


@dataclass(frozen=True)
class ClawInstanceArgs:
    """Everything one instance is made of. Secrets may be pulumi Outputs (marked secret)."""

    subdomain: str
    tier: str
    user_id: str
    base_domain: str
    cloudflare_zone_id: str
    model: str
    llm_base_url: str
    llm_api_key: pulumi.Input[str] = field(repr=False)
    gateway_token: pulumi.Input[str] = field(repr=False)
    instance_name: str | None = None
    region: str = tiers.DEFAULT_LOCATION
    proxied: bool = True
    ipv6: bool = True
    server_image: str = DEFAULT_SERVER_IMAGE
    golden_image: bool = False
    pool_member: str | None = None
    adopt_from_pool: str | None = None
    adopted: tuple[str, ...] = ()
    ssh_keys: tuple[str, ...] = ()
    operator_ssh_cidrs: tuple[str, ...] = ()
    control_plane_ssh_cidrs: tuple[str, ...] = ()
    ssh_port: str = "22"
    ssh_private_key: pulumi.Input[str] | None = field(default=None, repr=False)
    paused: bool = False
    paused_page_ipv4: str | None = None
    restarts: str = "0"
    installation_id: str | None = None
    instance_id: str | None = None
    openclaw_image: str = DEFAULT_OPENCLAW_IMAGE
    caddy_image: str = CADDY_IMAGE
    browser_image: str = BROWSER_IMAGE
    fqdn: str = field(init=False)

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        checked = _validate(values)
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "fqdn", naming.fqdn(self.subdomain, self.base_domain))


def _validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check typed values by field name; fill defaults; raise StackConfigError naming keys."""
    problems: dict[str, str] = {}
    result: dict[str, Any] = {}
    for key in KEYS:
        value = values.get(key.field)
        if value is None or value == "":
            if key.required and not (values.get("pool_member") and key.full_name in APP_LAYER_KEYS):
                problems[key.full_name] = _missing(key)
            result[key.field] = key.default
            continue
        if key.secret and not isinstance(value, str):
            result[key.field] = value  # an Output: checked where it was read
            continue
        try:
            result[key.field] = key.normalize(value)
        except ValueError as error:
            problems[key.full_name] = str(error)
            continue
        if key.required and result[key.field] in ((), ""):  # an empty list, or only commas
            problems[key.full_name] = _missing(key)
    if result.get("paused") and not result.get("paused_page_ipv4"):
        problems[KEYS_BY_FIELD["paused_page_ipv4"].full_name] = (
            "is required while paused: the platform's address that serves the paused page"
        )
    if not problems:
        result["instance_name"] = result["instance_name"] or result["subdomain"]
        try:
            naming.fqdn(result["subdomain"], result["base_domain"])
        except ValueError as error:
            problems[KEYS_BY_FIELD["subdomain"].full_name] = str(error)
    if problems:
        raise StackConfigError(problems)
    return result


def _missing(key: ConfigKey) -> str:
    flag = " --secret" if key.secret else ""
    allowed = f" (allowed values: {', '.join(key.allowed)})" if key.allowed else ""
    return f"is required: {key.doc}{allowed}. Set it with `pulumi config set{flag} {key.full_name} VALUE`"


# --- reading (the program) and writing (the provisioner) ---------------------------------------


def load(config: pulumi.Config | None = None, secret_keys: Iterable[str] | None = None) -> ClawInstanceArgs:
    """Read and validate the stack config; raises StackConfigError naming every bad key.

    `secret_keys` (full names the engine holds encrypted), when given, turns a secret stored in
    plain text into an error, so a token never sits readable in a committed stack file.
    """
    import pulumi

    config = config or pulumi.Config(NAMESPACE)
    problems: dict[str, str] = {}
    values: dict[str, Any] = {}
    encrypted = set(secret_keys) if secret_keys is not None else None
    for key in KEYS:
        text = config.get(key.name)
        if text is None or text == "":
            continue
        if key.secret and encrypted is not None and key.full_name not in encrypted:
            problems[key.full_name] = (
                f"is stored in plain text; set it again with `pulumi config set --secret {key.full_name}`"
            )
            continue
        try:
            values[key.field] = key.parse(text)
        except ValueError as error:
            problems[key.full_name] = str(error)
    try:
        checked = _validate(values)
    except StackConfigError as error:
        problems = {**error.problems, **problems}
    if problems:
        in_declared_order = {k.full_name: problems[k.full_name] for k in KEYS if k.full_name in problems}
        raise StackConfigError(in_declared_order)
    for key in KEYS:
        if key.secret:
            checked[key.field] = pulumi.Output.secret(checked[key.field])
    return ClawInstanceArgs(**checked)


def to_stack_config(**values: Any) -> dict[str, tuple[str, bool]]:
    """The stack config for these values: {"clawdet:<key>": (text, is_secret)}.

    Keywords are the ClawInstanceArgs field names (subdomain=..., tier=..., gateway_token=...).
    Values left out (or None) are not written, so the program's defaults apply; an empty list
    is left out too. Raises StackConfigError (a ValueError) naming every bad key.
    """
    unknown = sorted(set(values) - set(KEYS_BY_FIELD))
    if unknown:
        raise StackConfigError(
            {
                name: f"is not a stack config field; known fields: {', '.join(KEYS_BY_FIELD)}"
                for name in unknown
            }
        )
    not_text = [
        KEYS_BY_FIELD[name].full_name
        for name, value in values.items()
        if KEYS_BY_FIELD[name].secret and value is not None and not isinstance(value, str)
    ]
    if not_text:
        raise StackConfigError(dict.fromkeys(not_text, "must be given as plain text to be written"))
    checked = _validate(values)
    written: dict[str, tuple[str, bool]] = {}
    for key in KEYS:
        if values.get(key.field) in (None, ""):
            continue
        text = key.encode(checked[key.field])
        if text != "":
            written[key.full_name] = (text, key.secret)
    return written


def unknown_keys(present: Iterable[str]) -> list[str]:
    """Keys in the clawdet namespace that nothing reads (most likely typos)."""
    return sorted(k for k in present if k.startswith(f"{NAMESPACE}:") and k not in FULL_NAMES)


PROVIDER_SDKS = ("pulumi", "pulumi-hcloud", "pulumi-cloudflare", "pulumi-command")


def infrastructure_digest(config: Mapping[str, tuple[str, bool]], project_dir: Path) -> str:
    """What decides everything but the app layer: the program the engine runs (in `project_dir`),
    the provider SDKs' versions and every value of `config` outside APP_LAYER_KEYS. Two configs
    with one digest differ in the app layer only, so an update between them is in place (the
    reconciler then skips its replacement preview). Read afresh each time: code deployed under
    a running worker counts."""
    digest = hashlib.sha256()
    for path in sorted([*(project_dir / "programs").glob("*.py"), *(project_dir / "cloud-init").iterdir()]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for sdk in PROVIDER_SDKS:
        digest.update(f"{sdk}={importlib.metadata.version(sdk)}\0".encode())
    for key in sorted(k for k in config if k not in APP_LAYER_KEYS):
        digest.update(f"{key}\0{config[key][0]}\0".encode())
    return digest.hexdigest()
