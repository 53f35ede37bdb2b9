"""Entry point of the clawdet-instance Pulumi program: one stack is one customer instance.

The Pulumi engine runs this directory (Pulumi.yaml: `main: programs/`); the providers are the
default ones, configured by the stack's `hcloud:*` and `cloudflare:*` keys.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The engine puts programs/ itself on sys.path; our modules import each other as `programs.*`.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import pulumi  # noqa: E402
from pulumi.runtime import config as runtime_config  # noqa: E402

from programs import instance_config  # noqa: E402
from programs.claw_instance import ClawInstance  # noqa: E402
from programs.instance_config import OutputName, StackConfigError  # noqa: E402

COMPONENT_NAME = "instance"  # fixed, so that renaming an instance never replaces it


def _config_keys_present() -> set[str]:
    return set(runtime_config.get_config_env()) | set(runtime_config.CONFIG.get())


def _secret_keys_known() -> set[str] | None:
    """Config keys the engine holds encrypted, when the engine tells us (it does on real runs)."""
    from_context = runtime_config._SECRET_KEYS.get()
    if "PULUMI_CONFIG_SECRET_KEYS" not in os.environ and not from_context:
        return None
    return set(runtime_config.get_config_secret_keys_env()) | set(from_context)


def main() -> dict[str, pulumi.Output]:
    typos = instance_config.unknown_keys(_config_keys_present())
    if typos:
        raise StackConfigError(
            {key: f"is not a known key; known keys: {', '.join(instance_config.FULL_NAMES)}" for key in typos}
        )
    args = instance_config.load(pulumi.Config(instance_config.NAMESPACE), _secret_keys_known())
    instance = ClawInstance(COMPONENT_NAME, args)
    outputs = {
        OutputName.SERVER_ID: instance.server_id,
        OutputName.VOLUME_ID: instance.volume_id,
        OutputName.SERVER_STATUS: instance.server_status,
        OutputName.IPV4: instance.ipv4_address,
        OutputName.IPV6: instance.ipv6_address,
        OutputName.DNS_RECORD_IDS: instance.dns_record_ids,
        OutputName.FQDN: pulumi.Output.from_input(instance.fqdn),
        OutputName.URL: pulumi.Output.from_input(instance.url),
        OutputName.TIER: pulumi.Output.from_input(args.tier),
        OutputName.REGION: pulumi.Output.from_input(args.region),
        OutputName.SERVER_TYPE: pulumi.Output.from_input(instance.server_type.name),
        OutputName.CONFIG_HASH: instance.config_hash,
        OutputName.OPENCLAW_IMAGE: pulumi.Output.from_input(args.openclaw_image),
    }
    for name, value in outputs.items():
        pulumi.export(name, value)
    return outputs


if __name__ == "__main__":
    try:
        main()
    except StackConfigError as error:
        raise pulumi.RunError(str(error)) from None  # a plain message, no traceback
