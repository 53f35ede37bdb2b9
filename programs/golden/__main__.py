"""The clawdet-golden Pulumi program: one stack per OpenClaw version and region holds one golden
snapshot, an image with Docker, the pinned OpenClaw and Caddy images and the platform's bootstrap
already on it, so an instance booted from it only configures (programs/golden/README.md).

Built in two `up`s (clawdet/reconciler/golden.py drives them):
1. build: a builder server (bootstrapped by cloud-init: Docker from the archive, the images
   pulled), a command over SSH that waits for cloud-init to finish and cleans what must not be
   on every instance (cloud-init's state and logs, the machine id, the build-time key), then
   `hcloud.Snapshot` of it;
2. seal (`builderServerId` set to the builder's id): only the snapshot is declared, with the same
   inputs, so the engine keeps it and deletes the builder and its firewall.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import pulumi  # noqa: E402
import pulumi_command as command  # noqa: E402
import pulumi_hcloud as hcloud  # noqa: E402

from programs import cloud_init, naming, ssh_keys, tiers  # noqa: E402
from programs.claw_instance import DIAL_ATTEMPTS, firewall_rules  # noqa: E402
from programs.golden.labels import builder_labels, images_hash, snapshot_labels  # noqa: E402
from programs.instance_config import DEFAULT_SERVER_IMAGE  # noqa: E402

BOOTSTRAP_TIMEOUTS = pulumi.CustomTimeouts(create="15m")
# cloud-init in error exits 1: no snapshot then. The clean makes an instance booted from the
# snapshot a first boot of its own (its machine id, cloud-init's per-instance modules), with only
# the keys its own user_data gives.
BOOTSTRAPPED_AND_CLEANED = (
    "cloud-init status --wait && cloud-init clean --logs --machine-id"
    " && rm -f /root/.ssh/authorized_keys && sync"
)


def _builder(
    stack: str, config: pulumi.Config, region: str, images: list[str], installation_id: str
) -> tuple[hcloud.Server, command.remote.Command]:
    private_key = config.require_secret("sshPrivateKey")
    public_key = pulumi.Output.unsecret(private_key.apply(ssh_keys.public_key))
    ssh_port = config.get("sshPort") or "22"
    cidrs = tuple(c for c in (config.get("controlPlaneSshCidrs") or "").split(",") if c)
    labels = builder_labels(installation_id, stack)
    firewall = hcloud.Firewall(
        "builder-firewall",
        name=f"{stack}-builder",
        labels=labels,
        rules=firewall_rules(cidrs, False, ssh_port),
    )
    server = hcloud.Server(
        "builder",
        name=f"{stack}-builder",
        server_type=config.get("serverType") or tiers.server_type_for("free", region).name,
        location=region,
        image=config.get("serverImage") or DEFAULT_SERVER_IMAGE,
        user_data=public_key.apply(
            lambda key: cloud_init.render_golden_user_data(ssh_public_key=key, images=images)
        ),
        labels=labels,
        firewall_ids=[firewall.id.apply(int)],
        public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
    )
    bootstrapped = command.remote.Command(
        "builder-bootstrapped",
        connection=command.remote.ConnectionArgs(
            host=server.ipv4_address,
            port=float(ssh_port),
            user="root",
            private_key=private_key,
            dial_error_limit=DIAL_ATTEMPTS,
            per_dial_timeout=15,
        ),
        create=BOOTSTRAPPED_AND_CLEANED,
        opts=pulumi.ResourceOptions(depends_on=[server], custom_timeouts=BOOTSTRAP_TIMEOUTS),
    )
    return server, bootstrapped


def main() -> None:
    config = pulumi.Config()
    stack = pulumi.get_stack()
    version = naming.validate_label_value(config.require("openclawVersion"))
    region = config.get("region") or tiers.DEFAULT_LOCATION
    images = [image for image in config.require("images").split(",") if image]
    installation_id = config.require("installationId")
    labels = snapshot_labels(installation_id, version, region, images_hash(images))
    description = f"clawdet golden: OpenClaw {version}, {region}"
    sealed_from = config.get_int("builderServerId")
    if sealed_from is None:
        server, bootstrapped = _builder(stack, config, region, images, installation_id)
        server_id = server.id.apply(int)
        opts = pulumi.ResourceOptions(depends_on=[bootstrapped])
    else:
        server_id, opts = sealed_from, None
    pulumi.export("builderServerId", server_id)
    pulumi.export("builderDeleted", sealed_from is not None)
    snapshot = hcloud.Snapshot(
        "snapshot", server_id=server_id, description=description, labels=labels, opts=opts
    )
    pulumi.export("snapshotId", snapshot.id)
    pulumi.export("labels", labels)
    pulumi.export("imagesHash", images_hash(images))


if __name__ == "__main__":
    main()
