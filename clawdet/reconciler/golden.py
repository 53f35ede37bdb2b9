"""Golden snapshots: building one per OpenClaw version and region (the clawdet-golden program,
programs/golden/), and finding the newest one an instance boots from.

`build` runs the program twice on the stack `openclaw-<version>-<region>`: once to make the
builder server and snapshot it, once with `builderServerId` set so only the snapshot stays and the
engine deletes the builder (and its firewall). It refreshes first: a snapshot deleted out of band,
or one of other images (`imagesHash`: OpenClaw's, Caddy's and the browser's references, digests
included), is built again. A build that fails is destroyed, so the next one starts from a new
builder (cloud-init's error on the old one would never clear). The work folder is the data dir's
`golden/`: its Pulumi.yaml is written here, the program and the virtualenv are linked in, and the
stack files stay out of the repository.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from pulumi import automation as auto

from clawdet import cloud
from clawdet.errors import UserFacingError
from clawdet.reconciler.stacks import Stacks
from clawdet.settings import Settings
from programs import openclaw
from programs.cloud_init import BROWSER_IMAGE, CADDY_IMAGE
from programs.golden.labels import images_hash, snapshot_selector, stack_name
from programs.instance_config import digest_pinned_image

log = logging.getLogger(__name__)

PROJECT = "clawdet-golden"
PROGRAM_DIR = Path(__file__).resolve().parents[2] / "programs" / "golden"
SNAPSHOT_TYPE = "hcloud:index/snapshot:Snapshot"


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


def golden_images(
    openclaw_image: str, caddy_image: str | None = None, browser_image: str | None = None
) -> list[str]:
    """The images a golden snapshot holds, in the order its `imagesHash` is taken."""
    return [openclaw_image, caddy_image or CADDY_IMAGE, browser_image or BROWSER_IMAGE]


def images_of(settings: Settings, openclaw_image: str | None = None) -> list[str]:
    """The settings' images (`openclaw_image` instead of OPENCLAW_IMAGE, e.g. a rollout's)."""
    return golden_images(
        openclaw_image or settings.openclaw_image or openclaw.OPENCLAW_IMAGE,
        settings.caddy_image,
        settings.browser_image,
    )


def newest(
    target: cloud.CloudTarget,
    installation_id: str,
    openclaw_image: str,
    region: str,
    *,
    caddy_image: str | None = None,
    browser_image: str | None = None,
) -> int | None:
    """The id of the newest golden snapshot for this OpenClaw image's version and `region` that
    holds exactly these images (unset Caddy and browser images: programs.cloud_init's)."""
    images = golden_images(openclaw_image, caddy_image, browser_image)
    selector = snapshot_selector(
        installation_id, openclaw_version(openclaw_image), region, images_hash(images)
    )
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


def refuse_unsafe_build(settings: Settings, target: cloud.CloudTarget, images: list[str]) -> None:
    """The rules a worker starts under (Reconciler.refuse_host_secrets and
    refuse_images_without_digest) and an instance's config (no SSH open to the world)."""
    if not target.control_plane_ssh_cidrs:
        raise UserFacingError(
            "ssh_cidrs_not_set",
            "CONTROL_PLANE_SSH_CIDRS (the networks the workers connect from) is not set: the builder "
            "server could not be reached, and SSH is never opened to the world.",
            "Set it, then build again.",
        )
    if target.sandbox:
        return
    made_up = sorted(settings.generated)
    if made_up:
        raise UserFacingError(
            "secrets_not_set",
            f"{', '.join(made_up)} {'is' if len(made_up) == 1 else 'are'} not set: this host would make up "
            "its own, which no worker host shares (the snapshot's stack and key would be this host's).",
            "Set them (the same on every host), then build again.",
        )
    for setting, image in zip(("OPENCLAW_IMAGE", "CADDY_IMAGE", "BROWSER_IMAGE"), images, strict=True):
        try:
            digest_pinned_image(image, setting)
        except ValueError as error:
            raise UserFacingError("image_not_pinned", str(error), "Set it, then build again.") from None


def _holds_snapshot(stack: auto.Stack) -> bool:
    resources = stack.export_stack().deployment.get("resources") or []
    return any(resource.get("type") == SNAPSHOT_TYPE for resource in resources)


def build(
    settings: Settings,
    target: cloud.CloudTarget,
    installation_id: str,
    region: str,
    *,
    on_output: Callable[[str], None] | None = None,
) -> GoldenSnapshot:
    """Builds (or finds, when its stack holds a current one) the golden snapshot for `region`,
    then deletes the builder. Idempotent: a second run changes nothing."""
    try:
        return _build(settings, target, installation_id, region, on_output=on_output)
    except auto.CommandError as exc:
        raise UserFacingError(
            "golden_build_failed",
            "The golden snapshot's build failed (the engine's output says where).",
            "Run `clawdet golden build` again: a builder that failed was destroyed and is made "
            "anew; a half-done seal is finished.",
            status=502,
        ) from exc


def _build(
    settings: Settings,
    target: cloud.CloudTarget,
    installation_id: str,
    region: str,
    *,
    on_output: Callable[[str], None] | None = None,
) -> GoldenSnapshot:
    images = images_of(settings)
    refuse_unsafe_build(settings, target, images)
    version = openclaw_version(images[0])
    wanted_hash = images_hash(images)
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
    providers = target.provider_config()
    stack.set_all_config(
        {f"{PROJECT}:{key}": auto.ConfigValue(value) for key, value in config.items()}
        | {key: auto.ConfigValue(text) for key, (text, _) in providers.items()}
    )
    unset = [key for key in cloud.PROVIDER_CONFIG_KEYS if key not in providers]
    if unset and set(unset) & set(stack.get_all_config()):
        stack.remove_all_config(unset)
    # The key through stdin, never argv (as Stacks does for the instances' secrets).
    set_secret = ["config", "set", "--secret", "--raw", "--stack", stack.name, f"{PROJECT}:sshPrivateKey"]
    stacks.command.run(set_secret, workspace.work_dir, stacks.env, stdin=settings.instance_ssh_private_key)
    # A builder whose create an interrupted run left pending is dropped from the state (its
    # labels show it in `clawdet scan`'s orphans).
    stack.refresh(color="never", on_output=on_output, clear_pending_creates=True)
    outputs = stack.outputs()
    built = "imagesHash" in outputs and outputs["imagesHash"].value == wanted_hash
    if not (built and "snapshotId" in outputs and _holds_snapshot(stack)):
        if f"{PROJECT}:builderServerId" in stack.get_all_config():
            stack.remove_config(f"{PROJECT}:builderServerId")
        log.info("golden %s: building the snapshot of images %s", stack.name, wanted_hash)
        try:
            outputs = stack.up(
                color="never", on_output=on_output, message=f"clawdet golden build {stack.name}"
            ).outputs
        except auto.CommandError:
            log.warning("golden %s: the build failed; destroying its builder for a clean retry", stack.name)
            stack.destroy(color="never", on_output=on_output, message=f"clawdet golden cleanup {stack.name}")
            raise
    builder = outputs["builderServerId"].value
    stack.set_config(f"{PROJECT}:builderServerId", auto.ConfigValue(str(int(builder))))
    log.info(
        "golden %s: snapshot %s made; deleting builder %s", stack.name, outputs["snapshotId"].value, builder
    )
    sealed = stack.up(color="never", on_output=on_output, message=f"clawdet golden seal {stack.name}").outputs
    return GoldenSnapshot(int(sealed["snapshotId"].value), version, region)
