"""ClawInstance: one customer's OpenClaw gateway (firewall, data volume, server, DNS records).

The customer's data (the gateway's state: sessions, memory, workspace) lives on a Hetzner Volume
in the server's location, attached to the server and mounted where the gateway keeps its state;
a replaced server gets the same volume back, so nothing is lost.
"""

from __future__ import annotations

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_hcloud as hcloud

from programs import cloud_init, naming, tiers
from programs.cloudflare_ips import CLOUDFLARE_RANGES
from programs.instance_config import ClawInstanceArgs

ANYWHERE = ("0.0.0.0/0", "::/0")
AUTOMATIC_TTL = 1  # Cloudflare's "automatic"


def labels_for(args: ClawInstanceArgs) -> dict[str, str]:
    """Labels the fleet scan finds servers by (values are validated label values)."""
    return {
        "managed-by": "clawdet",
        "clawdet-instance": args.instance_name,
        "clawdet-user": args.user_id,
        "clawdet-tier": args.tier,
    }


def firewall_rules(operator_ssh_cidrs: tuple[str, ...], proxied: bool) -> list[hcloud.FirewallRuleArgs]:
    """Inbound rules; Hetzner drops every inbound packet no rule allows."""
    web_sources = list(CLOUDFLARE_RANGES if proxied else ANYWHERE)
    rules = [
        hcloud.FirewallRuleArgs(
            direction="in", protocol="tcp", port=port, source_ips=web_sources, description=description
        )
        for port, description in (("80", "HTTP (ACME challenge, redirect)"), ("443", "HTTPS"))
    ]
    if operator_ssh_cidrs:
        rules.append(
            hcloud.FirewallRuleArgs(
                direction="in",
                protocol="tcp",
                port="22",
                source_ips=list(operator_ssh_cidrs),
                description="SSH from operators",
            )
        )
    return rules


class ClawInstance(pulumi.ComponentResource):
    server: hcloud.Server
    firewall: hcloud.Firewall
    volume: hcloud.Volume
    volume_attachment: hcloud.VolumeAttachment
    dns_records: list[cloudflare.DnsRecord]

    def __init__(self, name: str, args: ClawInstanceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clawdet:index:ClawInstance", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = labels_for(args)
        self.server_type = tiers.server_type_for(args.tier, args.region)

        self.firewall = hcloud.Firewall(
            f"{name}-firewall",
            name=args.instance_name,
            labels=labels,
            rules=firewall_rules(args.operator_ssh_cidrs, args.proxied),
            opts=child,
        )

        self.volume = hcloud.Volume(
            f"{name}-volume",
            name=f"{args.instance_name}-data",
            size=tiers.TIERS[args.tier].volume_gb,
            location=args.region,
            format="ext4",
            labels=labels,
            opts=child,
        )

        user_data = pulumi.Output.all(args.gateway_token, args.llm_api_key, self.volume.linux_device).apply(
            lambda values: cloud_init.render_user_data(
                tier=args.tier,
                fqdn=args.fqdn,
                openclaw_image=args.openclaw_image,
                model=args.model,
                llm_base_url=args.llm_base_url,
                gateway_token=values[0],
                llm_api_key=values[1],
                data_device=values[2],
            )
        )

        self.server = hcloud.Server(
            f"{name}-server",
            name=args.instance_name,
            server_type=self.server_type.name,
            location=args.region,
            image=args.server_image,
            user_data=pulumi.Output.secret(user_data),
            labels=labels,
            firewall_ids=[self.firewall.id.apply(int)],
            ssh_keys=list(args.ssh_keys),
            public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=args.ipv6)],
            shutdown_before_deletion=True,
            # Server names are unique per Hetzner project: the old one must go first.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

        self.volume_attachment = hcloud.VolumeAttachment(
            f"{name}-volume-attachment",
            server_id=self.server.id.apply(int),
            volume_id=self.volume.id.apply(int),
            automount=False,  # cloud-init mounts it where the gateway keeps its state
            opts=child,
        )

        self.dns_records = [self._dns_record(name, "A", self.server.ipv4_address, args)]
        if args.ipv6:
            self.dns_records.append(self._dns_record(name, "AAAA", self.server.ipv6_address, args))

        self.fqdn = args.fqdn
        self.url = f"https://{args.fqdn}"
        self.server_id = self.server.id
        self.volume_id = self.volume.id
        self.server_status = self.server.status
        self.ipv4_address = self.server.ipv4_address
        self.ipv6_address = self.server.ipv6_address
        self.dns_record_ids = pulumi.Output.all(*(record.id for record in self.dns_records))
        self.register_outputs(
            {
                "fqdn": self.fqdn,
                "url": self.url,
                "server_id": self.server_id,
                "volume_id": self.volume_id,
                "server_status": self.server_status,
                "ipv4_address": self.ipv4_address,
                "ipv6_address": self.ipv6_address,
                "dns_record_ids": self.dns_record_ids,
            }
        )

    def _dns_record(
        self, name: str, record_type: str, address: pulumi.Output[str], args: ClawInstanceArgs
    ) -> cloudflare.DnsRecord:
        return cloudflare.DnsRecord(
            f"{name}-dns-{record_type.lower()}",
            zone_id=args.cloudflare_zone_id,
            name=args.fqdn,
            type=record_type,
            content=address,
            proxied=args.proxied,
            ttl=AUTOMATIC_TTL,
            comment=naming.dns_record_comment(args.instance_name),
            opts=pulumi.ResourceOptions(parent=self),
        )
