"""The one Cloudflare resource the program declares, without importing the pulumi_cloudflare SDK:
its package imports every one of its ~650 modules (10 MB of generated code), 2 s of CPU in
every `up`. Same type token, alias, provider version and wire properties as the SDK's
`cloudflare.DnsRecord` (tests/unit/programs/test_resources.py compares the two registrations).
"""

from __future__ import annotations

import importlib.metadata
import json

import pulumi

TYPE = "cloudflare:index/dnsRecord:DnsRecord"
FORMER_TYPE = "cloudflare:index/record:Record"  # the SDK's alias for state of older versions


def _plugin_version() -> str:
    """The provider plugin the engine loads for it, as the installed SDK names it (its
    pulumi-plugin.json, in semver: the package's own version is PEP 440), read without importing
    the SDK."""
    [manifest] = [
        f
        for f in importlib.metadata.distribution("pulumi_cloudflare").files
        if f.name == "pulumi-plugin.json"
    ]
    return json.loads(manifest.read_text())["version"]


VERSION = _plugin_version()


class DnsRecord(pulumi.CustomResource):
    def __init__(
        self,
        resource_name: str,
        *,
        zone_id: pulumi.Input[str],
        name: pulumi.Input[str],
        type: pulumi.Input[str],
        content: pulumi.Input[str],
        proxied: pulumi.Input[bool],
        ttl: pulumi.Input[float],
        comment: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        defaults = pulumi.ResourceOptions(version=VERSION, aliases=[pulumi.Alias(type_=FORMER_TYPE)])
        properties = {
            "zoneId": zone_id,
            "name": name,
            "type": type,
            "content": content,
            "proxied": proxied,
            "ttl": ttl,
            "comment": comment,
        }
        super().__init__(TYPE, resource_name, properties, pulumi.ResourceOptions.merge(defaults, opts))
