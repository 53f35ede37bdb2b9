"""Golden snapshots: building one per OpenClaw version and region (the clawdet-golden program,
programs/golden/), and finding the newest one an instance boots from.

`build` runs the program twice on the stack `openclaw-<version>-<region>`: once to make the
builder server and snapshot it, once with `builderServerId` set so only the snapshot stays and the
engine deletes the builder (and its firewall). The work folder is the data dir's `golden/`: its
Pulumi.yaml is written here, the program and the virtualenv are linked in, and the stack files
stay out of the repository.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from pulumi import automation as auto

from clawdet import cloud
from clawdet.reconciler.stacks import Stacks
from clawdet.settings import Settings
from programs import openclaw
from programs.cloud_init import BROWSER_IMAGE, CADDY_IMAGE
from programs.golden.labels import snapshot_selector, stack_name

log = logging.getLogger(__name__)

PROJECT = "clawdet-golden"
PROGRAM_DIR = Path(__file__).resolve().parents[2] / "programs" / "golden"


@dataclasses.dataclass(frozen=True)
class GoldenSnapshot:
    image_id: int
    openclaw_version: str
    region: str


def openclaw_version(image: str) -> str:
    """The tag of an OpenClaw image reference (`...:2026.9.6@sha256:...` -> `2026.9.6`)."""
    name = image.partition("@")[0]
    tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
    if not tag:
        raise ValueError(f"{image!r} names no version tag; a golden snapshot is made per OpenClaw version")
    return tag


def _images(settings: Settings) -> tuple[str, list[str]]:
    main = settings.openclaw_image or openclaw.OPENCLAW_IMAGE
    return main, [main, settings.caddy_image or CADDY_IMAGE, settings.browser_image or BROWSER_IMAGE]


def newest(target: cloud.CloudTarget, installation_id: str, openclaw_image: str, region: str) -> int | None:
    """The id of the newest golden snapshot for this OpenClaw image's version and `region`."""
    selector = snapshot_selector(installation_id, openclaw_version(openclaw_image), region)
    hetzner = cloud.Hetzner(target.hcloud_endpoint, target.hcloud_token)
    try:
        found = hetzner.newest_snapshot(selector)
    finally:
        hetzner.close()
    return int(found["id"]) if found else None


def _workspace(stacks: Stacks, settings: Settings) -> auto.LocalWorkspace:
    folder = settings.data_dir / "golden"
    folder.mkdir(parents=True, exist_ok=True)
    links = {"program": PROGRAM_DIR, ".venv": (settings.project_dir / ".venv").resolve()}
    for name, target in links.items():
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(target)
    project = auto.ProjectSettings(
        name=PROJECT,
        runtime=auto.ProjectRuntimeInfo(name="python", options={"toolchain": "pip", "virtualenv": ".venv"}),
        main="program/",
        description="Golden snapshots: one stack per OpenClaw version and region",
    )
    return auto.LocalWorkspace(
        work_dir=str(folder),
        project_settings=project,
        pulumi_home=stacks.env.get("PULUMI_HOME"),
        env_vars=stacks.env,
        secrets_provider="passphrase",
        pulumi_command=stacks.command,
    )


def build(
    settings: Settings,
    target: cloud.CloudTarget,
    installation_id: str,
    region: str,
    *,
    on_output: Callable[[str], None] | None = None,
) -> GoldenSnapshot:
    """Builds (or finds, when its stack holds one) the golden snapshot for `region`, then
    deletes the builder. Idempotent: a second run changes nothing."""
    main, images = _images(settings)
    version = openclaw_version(main)
    stacks = Stacks(settings, target)
    workspace = _workspace(stacks, settings)
    stack = auto.Stack.create_or_select(stack_name(version, region), workspace)
    config = {
        "openclawVersion": version,
        "region": region,
        "images": ",".join(images),
        "installationId": installation_id,
        "controlPlaneSshCidrs": target.control_plane_ssh_cidrs,
        "sshPort": str(target.ssh_port),
    }
    stack.set_all_config({f"{PROJECT}:{key}": auto.ConfigValue(value) for key, value in config.items()})
    # The key through stdin, never argv (as Stacks does for the instances' secrets).
    set_secret = ["config", "set", "--secret", "--raw", "--stack", stack.name, f"{PROJECT}:sshPrivateKey"]
    stacks.command.run(set_secret, workspace.work_dir, stacks.env, stdin=settings.instance_ssh_private_key)
    outputs = stack.outputs()
    if "snapshotId" not in outputs:  # nothing built yet (or a build that failed): build
        if f"{PROJECT}:builderServerId" in stack.get_all_config():
            stack.remove_config(f"{PROJECT}:builderServerId")
        log.info("golden %s: building the snapshot", stack.name)
        outputs = stack.up(
            color="never", on_output=on_output, message=f"clawdet golden build {stack.name}"
        ).outputs
    builder = outputs["builderServerId"].value
    stack.set_config(f"{PROJECT}:builderServerId", auto.ConfigValue(str(int(builder))))
    log.info(
        "golden %s: snapshot %s made; deleting builder %s", stack.name, outputs["snapshotId"].value, builder
    )
    sealed = stack.up(color="never", on_output=on_output, message=f"clawdet golden seal {stack.name}").outputs
    return GoldenSnapshot(int(sealed["snapshotId"].value), version, region)
