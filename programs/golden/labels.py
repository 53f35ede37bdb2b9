"""The labels of a golden snapshot, and the selector that finds the newest one for an OpenClaw
version, region and set of pinned images (imported by the program and by the control plane)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from programs import naming

GOLDEN_LABEL = "clawdet-golden"  # its value: the OpenClaw version on the snapshot
REGION_LABEL = "clawdet-region"
IMAGES_LABEL = "clawdet-images"  # a short hash of the pinned images pulled onto the snapshot
BUILDER_LABEL = "clawdet-golden-builder"  # a builder server and its firewall: the stack's name


def images_hash(images: Sequence[str]) -> str:
    """12 hex digits naming the pinned images (in order): another digest is another snapshot."""
    return hashlib.sha256(",".join(images).encode()).hexdigest()[:12]


def snapshot_labels(
    installation_id: str, openclaw_version: str, region: str, images_digest: str
) -> dict[str, str]:
    return {
        naming.MANAGED_LABEL: "clawdet",
        naming.INSTALLATION_LABEL: naming.validate_label_value(installation_id),
        GOLDEN_LABEL: naming.validate_label_value(openclaw_version),
        REGION_LABEL: naming.validate_label_value(region),
        IMAGES_LABEL: naming.validate_label_value(images_digest),
    }


def builder_labels(installation_id: str, stack: str) -> dict[str, str]:
    """Findable as this installation's (no instance's, so no instance sweep deletes it)."""
    return {
        naming.MANAGED_LABEL: "clawdet",
        naming.INSTALLATION_LABEL: naming.validate_label_value(installation_id),
        BUILDER_LABEL: naming.validate_label_value(stack),
    }


def snapshot_selector(installation_id: str, openclaw_version: str, region: str, images_digest: str) -> str:
    labels = snapshot_labels(installation_id, openclaw_version, region, images_digest)
    return ",".join(f"{key}={value}" for key, value in labels.items())


def stack_name(openclaw_version: str, region: str) -> str:
    """One stack per OpenClaw version and region: `openclaw-2026.9.6-fsn1`."""
    return f"openclaw-{openclaw_version}-{region}"
