"""ClawInstance: one customer's OpenClaw gateway (firewall, data volume, server, app layer, DNS).

The customer's data (the gateway's state: sessions, memory, workspace) lives on a Hetzner Volume
in the server's location, attached to the server and mounted where the gateway keeps its state;
a replaced server gets the same volume back, so nothing is lost.

cloud-init only bootstraps the server (Docker, root's SSH key, the mount). The app layer (compose
file, .env, openclaw.json, Caddyfile) is pushed over SSH by pulumi-command: one CopyToRemote per
file uploads a release folder named by the hash of the files, a Command puts it live. A new OpenClaw
version, a rotated credential, another model or new tier limits change that hash: `pulumi
preview` shows an update of those two resources, and it costs a container restart, not the server.
A paused instance has no server: the name points at the platform's paused page.
"""

from __future__ import annotations

import pulumi
import pulumi_command as command
import pulumi_hcloud as hcloud

from programs import cloud_init, naming, ssh_keys, tiers
from programs.cloudflare_dns import DnsRecord
from programs.cloudflare_ips import CLOUDFLARE_RANGES
from programs.instance_config import ClawInstanceArgs

ANYWHERE = ("0.0.0.0/0", "::/0")
AUTOMATIC_TTL = 1  # Cloudflare's "automatic"
DIAL_ATTEMPTS = 40  # SSH dials (backoff up to 5 s each): a few minutes for a server to boot
DEPLOY_TIMEOUTS = pulumi.CustomTimeouts(create="15m", update="15m")
# What the engine cannot compare when it imports a warm-pool member (adoptFromPool): its names
# and labels are the pool's until this `up` is done (the next one renames them in place), and the
# provider's own flags read back as their defaults. userData and sshKeys are written once at
# creation and never read back, and a volume in use no longer tells its format: an adopted
# server and volume never compare them (`adopted`; a rebuild's new server is not adopted).
ADOPTED_IGNORES = {"firewall": [], "volume": ["format"], "server": ["userData", "sshKeys"]}
IMPORT_IGNORES = {
    "firewall": ["name", "labels"],
    "volume": ["name", "labels", "format"],
    "server": ["name", "labels", "userData", "sshKeys", "keepDisk", "shutdownBeforeDeletion"],
}


def labels_for(args: ClawInstanceArgs) -> dict[str, str]:
    """Labels the fleet scan finds servers by (values are validated label values)."""
    ids = {
        naming.INSTALLATION_LABEL: args.installation_id,
        naming.INSTANCE_ID_LABEL: args.instance_id,
        naming.POOL_LABEL: args.pool_member,
    }
    return {
        naming.MANAGED_LABEL: "clawdet",
        **{label: value for label, value in ids.items() if value},
        naming.INSTANCE_LABEL: args.instance_name,
        "clawdet-user": args.user_id,
        "clawdet-tier": args.tier,
    }


def firewall_rules(
    ssh_cidrs: tuple[str, ...], proxied: bool, ssh_port: str = "22"
) -> list[hcloud.FirewallRuleArgs]:
    """Inbound rules; Hetzner drops every inbound packet no rule allows. SSH is open only to
    `ssh_cidrs`: the control plane's networks and the operators'."""
    web_sources = list(CLOUDFLARE_RANGES if proxied else ANYWHERE)
    rules = [
        hcloud.FirewallRuleArgs(
            direction="in", protocol="tcp", port=port, source_ips=web_sources, description=description
        )
        for port, description in (("80", "HTTP (ACME challenge, redirect)"), ("443", "HTTPS"))
    ]
    if ssh_cidrs:
        rules.append(
            hcloud.FirewallRuleArgs(
                direction="in",
                protocol="tcp",
                port=ssh_port,
                source_ips=list(ssh_cidrs),
                description="SSH from the control plane and operators",
            )
        )
    return rules


class ClawInstance(pulumi.ComponentResource):
    firewall: hcloud.Firewall
    volume: hcloud.Volume
    server: hcloud.Server | None
    volume_attachment: hcloud.VolumeAttachment | None
    release: list[command.remote.CopyToRemote]
    deploy: command.remote.Command | None
    dns_records: list[DnsRecord]

    def __init__(self, name: str, args: ClawInstanceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clawdet:index:ClawInstance", name, None, opts)
        labels = labels_for(args)
        self.server_type = tiers.server_type_for(args.tier, args.region)
        ssh_cidrs = tuple(dict.fromkeys((*args.control_plane_ssh_cidrs, *args.operator_ssh_cidrs)))

        self.imports = dict(
            zip(("server", "volume", "firewall"), args.adopt_from_pool.split(","), strict=True)
            if args.adopt_from_pool
            else ()
        )
        self.firewall = hcloud.Firewall(
            f"{name}-firewall",
            name=args.instance_name,
            labels=labels,
            rules=firewall_rules(ssh_cidrs, args.proxied, args.ssh_port),
            opts=self._adopting("firewall", args),
        )

        self.volume = hcloud.Volume(
            f"{name}-volume",
            name=f"{args.instance_name}-data",
            size=tiers.TIERS[args.tier].volume_gb,
            location=args.region,
            format="ext4",
            labels=labels,
            opts=self._adopting("volume", args),
        )
        self.server = self.volume_attachment = self.deploy = self.config_hash = None
        self.release, self.dns_records = [], []
        if args.pool_member:  # booted and waiting for an instance: no app layer, no name yet
            self._server(name, args, labels)
        else:
            self._app_layer_and_name(name, args, labels)

        self.fqdn = args.fqdn
        self.url = f"https://{args.fqdn}"
        self.server_id = self.server.id if self.server else None
        self.volume_id = self.volume.id
        self.server_status = self.server.status if self.server else "paused"
        self.ipv4_address = self.server.ipv4_address if self.server else None
        self.ipv6_address = self.server.ipv6_address if self.server else None
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
                "config_hash": self.config_hash,
            }
        )

    def _app_layer_and_name(self, name: str, args: ClawInstanceArgs, labels: dict[str, str]) -> None:
        self.app_files = pulumi.Output.all(args.gateway_token, args.llm_api_key).apply(
            lambda secrets: cloud_init.render_app_files(
                tier=args.tier,
                fqdn=args.fqdn,
                openclaw_image=args.openclaw_image,
                caddy_image=args.caddy_image,
                browser_image=args.browser_image,
                model=args.model,
                llm_base_url=args.llm_base_url,
                gateway_token=secrets[0],
                llm_api_key=secrets[1],
            )
        )
        # The hash names the release; it reveals nothing of the secrets in the files.
        self.config_hash = pulumi.Output.unsecret(self.app_files.apply(cloud_init.config_hash))

        if args.paused:
            address: pulumi.Input[str] = args.paused_page_ipv4
        else:
            self._server(name, args, labels)
            address = self.server.ipv4_address

        self.dns_records = [self._dns_record(name, "A", address, args)]
        if args.ipv6 and self.server is not None:
            self.dns_records.append(self._dns_record(name, "AAAA", self.server.ipv6_address, args))

    def _server(self, name: str, args: ClawInstanceArgs, labels: dict[str, str]) -> None:
        """The server, its volume attachment and the app layer pushed onto it."""
        child = pulumi.ResourceOptions(parent=self)
        public_key = pulumi.Output.unsecret(
            pulumi.Output.from_input(args.ssh_private_key).apply(ssh_keys.public_key)
        )
        # A warm-pool server pulls the app's images at boot (a golden snapshot holds them already).
        pulls = [args.openclaw_image, args.caddy_image] if args.pool_member and not args.golden_image else []
        user_data = pulumi.Output.all(self.volume.linux_device, public_key).apply(
            lambda values: cloud_init.render_user_data(
                data_device=values[0],
                ssh_public_key=values[1],
                software_preinstalled=args.golden_image,
                pulls=pulls,
            )
        )
        from_pool = bool(self.imports) or "volume" in args.adopted
        self.server = hcloud.Server(
            f"{name}-server",
            name=args.instance_name,
            server_type=self.server_type.name,
            keep_disk=True,  # a later, smaller type stays possible: the data is on the volume
            location=args.region,
            image=args.server_image,
            user_data=user_data,
            labels=labels,
            firewall_ids=[self.firewall.id.apply(int)],
            ssh_keys=list(args.ssh_keys),
            public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=args.ipv6)],
            shutdown_before_deletion=True,
            # Server names are unique per Hetzner project: the old one must go first.
            opts=pulumi.ResourceOptions.merge(
                self._adopting("server", args), pulumi.ResourceOptions(delete_before_replace=True)
            ),
        )
        self.volume_attachment = hcloud.VolumeAttachment(
            f"{name}-volume-attachment",
            server_id=self.server.id.apply(int),
            volume_id=self.volume.id.apply(int),
            # cloud-init mounts it where the gateway keeps its state. Not set on an attachment
            # from the pool: the API never tells it, so an import would see it change.
            automount=None if from_pool else False,
            opts=pulumi.ResourceOptions(parent=self, import_=self.imports.get("volume")),
        )
        connection = command.remote.ConnectionArgs(
            host=self.server.ipv4_address,
            port=float(args.ssh_port),
            user="root",
            private_key=args.ssh_private_key,
            dial_error_limit=DIAL_ATTEMPTS,  # a new server takes a while to start sshd
            per_dial_timeout=15,
        )
        if args.pool_member:  # booted: cloud-init (and its pulls) done, ready to be adopted
            self.deploy = command.remote.Command(
                f"{name}-booted",
                connection=connection,
                create="cloud-init status --wait",
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[self.volume_attachment], custom_timeouts=DEPLOY_TIMEOUTS
                ),
            )
            return
        release = self.config_hash.apply(lambda value: cloud_init.release_dir(value, args.restarts))
        # Anything that changes the connection replaces both: a copy does not run again on a
        # changed connection alone, and the deploy needs its release uploaded where it runs.
        on_new_connection = [self.server.id, args.ssh_port, public_key]
        self.release = [
            command.remote.CopyToRemote(
                f"{name}-release-{file_name.strip('.').lower()}",
                connection=connection,
                source=self._file(file_name),
                remote_path=release.apply(lambda folder, n=file_name: f"{folder}/{n}"),
                triggers=on_new_connection,
                opts=child,
            )
            for file_name in cloud_init.APP_FILES
        ]
        self.deploy = command.remote.Command(
            f"{name}-deploy",
            connection=connection,
            create=pulumi.Output.all(release, self.volume.linux_device).apply(
                lambda values: cloud_init.deploy_command(*values)
            ),
            add_previous_output_in_env=False,  # sshd refuses env requests (no AcceptEnv)
            triggers=on_new_connection,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*self.release, self.volume_attachment],
                custom_timeouts=DEPLOY_TIMEOUTS,
            ),
        )

    def _adopting(self, kind: str, args: ClawInstanceArgs) -> pulumi.ResourceOptions:
        """The engine imports this resource from the warm-pool member being adopted, if any."""
        if kind in self.imports:
            return pulumi.ResourceOptions(
                parent=self, import_=self.imports[kind], ignore_changes=IMPORT_IGNORES[kind]
            )
        ignored = ADOPTED_IGNORES[kind] if kind in args.adopted else []
        return pulumi.ResourceOptions(parent=self, ignore_changes=ignored or None)

    def _file(self, file_name: str) -> pulumi.Output[pulumi.StringAsset]:
        """One file of the app layer; only the .env (the instance's credentials) stays secret."""
        asset = self.app_files.apply(lambda files: pulumi.StringAsset(files[file_name]))
        return asset if file_name == cloud_init.ENV_FILE else pulumi.Output.unsecret(asset)

    def _dns_record(
        self, name: str, record_type: str, address: pulumi.Input[str], args: ClawInstanceArgs
    ) -> DnsRecord:
        return DnsRecord(
            f"{name}-dns-{record_type.lower()}",
            zone_id=args.cloudflare_zone_id,
            name=args.fqdn,
            type=record_type,
            content=address,
            proxied=args.proxied,
            ttl=AUTOMATIC_TTL,
            comment=naming.dns_record_comment(args.installation_id, args.instance_name),
            opts=pulumi.ResourceOptions(parent=self),
        )
