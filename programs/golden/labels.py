"""The labels of a golden snapshot, and the selector that finds the newest one for an OpenClaw
version and region (imported by the program and by the control plane)."""

from __future__ import annotations

from programs import naming

GOLDEN_LABEL = "clawdet-golden"  # its value: the OpenClaw version on the snapshot
REGION_LABEL = "clawdet-region"


def snapshot_labels(installation_id: str, openclaw_version: str, region: str) -> dict[str, str]:
    return {
        naming.MANAGED_LABEL: "clawdet",
        naming.INSTALLATION_LABEL: naming.validate_label_value(installation_id),
        GOLDEN_LABEL: naming.validate_label_value(openclaw_version),
        REGION_LABEL: naming.validate_label_value(region),
    }


def snapshot_selector(installation_id: str, openclaw_version: str, region: str) -> str:
    return ",".join(
        f"{key}={value}" for key, value in snapshot_labels(installation_id, openclaw_version, region).items()
    )


def stack_name(openclaw_version: str, region: str) -> str:
    """One stack per OpenClaw version and region: `openclaw-2026.9.6-fsn1`."""
    return f"openclaw-{openclaw_version}-{region}"
