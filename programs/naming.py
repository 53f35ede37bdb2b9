"""Name rules shared by the web app (signup form), the provisioner and the Pulumi program.

Pure standard library and free of side effects, so anything may import it. Every validator
returns the normalised value or raises ValueError with a message a user can read.
"""

from __future__ import annotations

import hashlib
import re

# Names a customer may not take: they are ours (or look like they are).
RESERVED_SUBDOMAINS = frozenset(
    {
        "www",
        "api",
        "admin",
        "mail",
        "app",
        "smtp",
        "imap",
        "pop",
        "pop3",
        "mx",
        "ftp",
        "ns",
        "ns1",
        "ns2",
        "dns",
        "webmail",
        "autoconfig",
        "autodiscover",
        "auth",
        "login",
        "signup",
        "account",
        "accounts",
        "billing",
        "dashboard",
        "console",
        "status",
        "support",
        "help",
        "docs",
        "blog",
        "cdn",
        "static",
        "assets",
        "dev",
        "staging",
        "test",
        "demo",
        "localhost",
        "root",
        "clawdet",
    }
)

_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# Hetzner label values: at most 63 characters, start and end alphanumeric, `-_.` in between.
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
MAX_FQDN_LENGTH = 253


def validate_subdomain(name: str) -> str:
    """A customer's subdomain: one lowercase DNS label that is not reserved."""
    label = _as_text(name, "subdomain").strip().lower()
    if not label:
        raise ValueError("The subdomain is empty; choose a name of letters, digits and hyphens.")
    if len(label) > 63:
        raise ValueError("The subdomain is longer than 63 characters.")
    if not _DNS_LABEL.fullmatch(label):
        raise ValueError(
            "The subdomain may only contain the letters a-z, digits and hyphens, "
            "and must start and end with a letter or digit."
        )
    if label[2:4] == "--":
        # "xn--" and friends are reserved for internationalised names (RFC 5891).
        raise ValueError("The subdomain may not have two hyphens in its third and fourth characters.")
    if label in RESERVED_SUBDOMAINS:
        raise ValueError(f"The subdomain {label!r} is reserved; please choose another name.")
    return label


def validate_hostname_label(name: str) -> str:
    """A single DNS/host name label (used for server and firewall names)."""
    label = _as_text(name, "name").strip().lower()
    if not _DNS_LABEL.fullmatch(label):
        raise ValueError(
            f"{label!r} is not a valid host name: use 1-63 of a-z, 0-9 and hyphens, "
            "starting and ending with a letter or digit."
        )
    return label


def validate_domain(name: str) -> str:
    """A DNS domain such as ``clawdet.com`` (at least two labels)."""
    domain = _as_text(name, "domain").strip().lower().rstrip(".")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{domain!r} is not a valid domain name such as 'example.com'.")
    if len(domain) > MAX_FQDN_LENGTH:
        raise ValueError(f"The domain is longer than {MAX_FQDN_LENGTH} characters.")
    return domain


def fqdn(subdomain: str, base_domain: str) -> str:
    """The instance's public host name; raises ValueError when it would be too long."""
    name = f"{validate_subdomain(subdomain)}.{validate_domain(base_domain)}"
    if len(name) > MAX_FQDN_LENGTH:
        raise ValueError(f"{name!r} is longer than {MAX_FQDN_LENGTH} characters.")
    return name


def validate_label_value(value: str) -> str:
    """A Hetzner label value (the owner's user id, the instance name)."""
    text = _as_text(value, "label value").strip()
    if not _LABEL_VALUE.fullmatch(text):
        raise ValueError(
            f"{text!r} cannot be a Hetzner label value: use 1-63 of letters, digits, '-', '_' "
            "and '.', starting and ending with a letter or digit."
        )
    return text


def owner_label(user_id: str) -> str:
    """The clawdet-user label value of an owner: the user id when it is a valid label value, else
    a stable stand-in that is one (ids imported from users.json may have any characters or 64 of
    them, and Hetzner would refuse every create)."""
    text = _as_text(user_id, "user id")
    if _LABEL_VALUE.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"user-{digest[:32]}"


def _as_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"The {what} must be text, not {type(value).__name__}.")
    return value


MANAGED_LABEL = "managed-by"
INSTALLATION_LABEL = "clawdet-installation"
INSTANCE_LABEL = "clawdet-instance"
INSTANCE_ID_LABEL = "clawdet-instance-id"
POOL_LABEL = "clawdet-pool"  # a warm-pool member's id, until an instance adopts it


def ours(installation_id: str, instance_id: str | None = None) -> str:
    """The Hetzner label selector of what this installation made (for one instance, given its
    id): never by name alone, so installations sharing a project never touch each other's."""
    selector = f"{MANAGED_LABEL}=clawdet,{INSTALLATION_LABEL}={installation_id}"
    return f"{selector},{INSTANCE_ID_LABEL}={instance_id}" if instance_id else selector


def dns_record_comment(installation_id: str | None, instance_name: str) -> str:
    """The comment on every DNS record an instance's stack makes: how the platform tells its own
    records from the operator's and another installation's (only these are ever swept). A stack
    written before installation ids keeps its old comment until a worker converges it."""
    if not installation_id:
        return f"clawdet instance {instance_name}"
    return f"clawdet {installation_id} instance {instance_name}"
