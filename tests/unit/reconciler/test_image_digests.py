"""Real servers pull every customer image by digest: outside the sandbox the reconciler refuses an
OpenClaw, Caddy or browser image pinned only by a tag (which the registry can move), and says
which setting to change and how to get the digest. The sandbox keeps tags."""

from types import SimpleNamespace

import pytest

from clawdet.cloud import CloudTarget
from clawdet.reconciler.reconciler import Reconciler, Refused
from clawdet.settings import Settings
from programs import openclaw, ssh_keys

DIGEST = "@sha256:" + "4b" * 32
PINNED = {
    "OPENCLAW_IMAGE": openclaw.OPENCLAW_IMAGE + DIGEST,
    "CADDY_IMAGE": "caddy:2.11.4-alpine" + DIGEST,
    "BROWSER_IMAGE": "chromedp/headless-shell:148.0.7778.97" + DIGEST,
}


def reconciler(tmp_path, *, sandbox: bool, **env: str) -> Reconciler:
    settings = Settings.from_env(
        {
            "CLAWDET_DATA_DIR": str(tmp_path),
            "INSTANCE_SSH_PRIVATE_KEY": ssh_keys.generate(),
            "PUBLIC_URL": "https://clawdet.example",
            **env,
        },
        dotenv=False,
    )
    reconciler = Reconciler.__new__(Reconciler)  # only the settings and the cloud matter here
    reconciler.settings = settings
    reconciler.database = SimpleNamespace(installation_id="install-1")
    reconciler.target = CloudTarget(
        sandbox=sandbox,
        hcloud_token="t",
        hcloud_endpoint="https://api.hetzner.cloud/v1",
        cloudflare_token="t",
        cloudflare_base_url="https://api.cloudflare.com/client/v4",
        zone_id="0123456789abcdef0123456789abcdef",
        base_domain="clawdet.example",
        health_url_template="https://{fqdn}/healthz",
        control_plane_ssh_cidrs="192.0.2.0/28",
    )
    return reconciler


def instance(desired_image: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        id="inst-1",
        subdomain="alice",
        tier="enterprise",
        region="fsn1",
        user_id="user_42",
        desired_image=desired_image,
        desired_state="running",
        llm_key_version=0,
        gateway_token_version=0,
        restarts=0,
    )


def test_production_refuses_the_default_images_pinned_by_tag_only(tmp_path):
    with pytest.raises(Refused) as refused:
        reconciler(tmp_path, sandbox=False).stack_config(instance())
    message = str(refused.value)
    assert "OPENCLAW_IMAGE" in message and openclaw.OPENCLAW_IMAGE in message
    assert "not pinned by digest" in message
    assert "docker buildx imagetools inspect" in message and "crane digest" in message


@pytest.mark.parametrize("unpinned", ["CADDY_IMAGE", "BROWSER_IMAGE"])
def test_production_refuses_a_caddy_or_browser_image_pinned_by_tag_only(tmp_path, unpinned):
    env = PINNED | {unpinned: PINNED[unpinned].partition("@")[0]}
    with pytest.raises(Refused, match=f"{unpinned} is .* not pinned by digest"):
        reconciler(tmp_path, sandbox=False, **env).stack_config(instance())


def test_production_names_the_rollout_when_its_image_is_not_pinned_by_digest(tmp_path):
    rolled_out = "ghcr.io/openclaw/openclaw:2026.9.9"
    with pytest.raises(Refused, match="--version of a rollout or pin") as refused:
        reconciler(tmp_path, sandbox=False, **PINNED).stack_config(instance(), image=rolled_out)
    assert "OPENCLAW_IMAGE" not in str(refused.value)


def test_production_deploys_digest_pinned_images(tmp_path):
    config = reconciler(tmp_path, sandbox=False, **PINNED).stack_config(instance())
    assert config["clawdet:openclawImage"] == (PINNED["OPENCLAW_IMAGE"], False)
    assert config["clawdet:caddyImage"] == (PINNED["CADDY_IMAGE"], False)
    assert config["clawdet:browserImage"] == (PINNED["BROWSER_IMAGE"], False)


def test_the_sandbox_keeps_tags(tmp_path):
    config = reconciler(tmp_path, sandbox=True, PUBLIC_URL="http://127.0.0.1:8000").stack_config(instance())
    assert "clawdet:caddyImage" not in config  # the program's default tag applies
    assert "@sha256:" not in config.get("clawdet:openclawImage", ("",))[0]
