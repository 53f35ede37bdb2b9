"""Real servers pull every customer image by digest: outside the sandbox a worker refuses to start
with an OpenClaw, Caddy or browser image setting pinned only by a tag (which the registry can
move), and a rollout or pin refuses such a version, each saying what to change and how to get
the digest. An instance already running a tag keeps working; the sandbox keeps tags."""

import re
from types import SimpleNamespace

import pytest

from clawdet.errors import UserFacingError
from clawdet.instances import credentials
from clawdet.reconciler.reconciler import Reconciler
from clawdet.rollouts.plan import release_image
from clawdet.settings import Settings
from programs import openclaw, ssh_keys
from tests.fixtures.cloud import unreached_target

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
    reconciler.target = unreached_target(sandbox=sandbox)
    reconciler.roots = credentials.Roots.of(settings)
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
        llm_key_legacy=False,
        gateway_token_legacy=False,
        restarts=0,
        server_image=None,
        adopted_from=None,
    )


def test_production_refuses_the_default_images_pinned_by_tag_only(tmp_path):
    with pytest.raises(UserFacingError) as refused:
        reconciler(tmp_path, sandbox=False).refuse_images_without_digest()
    message = str(refused.value.message)
    assert "OPENCLAW_IMAGE" in message and openclaw.OPENCLAW_IMAGE in message
    assert "not pinned by digest" in message
    assert "docker buildx imagetools inspect" in message and "crane digest" in message


@pytest.mark.parametrize("unpinned", ["CADDY_IMAGE", "BROWSER_IMAGE"])
def test_production_refuses_a_caddy_or_browser_image_pinned_by_tag_only(tmp_path, unpinned):
    env = PINNED | {unpinned: PINNED[unpinned].partition("@")[0]}
    with pytest.raises(UserFacingError, match=f"{unpinned} is .* not pinned by digest"):
        reconciler(tmp_path, sandbox=False, **env).refuse_images_without_digest()


def test_a_rollout_or_pin_to_a_version_without_digest_is_refused_on_real_servers():
    refusal = re.escape("--version is ghcr.io/openclaw/openclaw:2026.9.9, not pinned")
    with pytest.raises(ValueError, match=refusal):
        release_image("2026.9.9", by_digest=True)
    pinned = "ghcr.io/openclaw/openclaw:2026.9.9" + DIGEST
    assert release_image(pinned, by_digest=True) == pinned
    assert release_image("2026.9.9", by_digest=False) == "ghcr.io/openclaw/openclaw:2026.9.9"


def test_production_deploys_digest_pinned_images(tmp_path):
    production = reconciler(tmp_path, sandbox=False, **PINNED)
    production.refuse_images_without_digest()
    config = production.stack_config(instance())
    assert config["clawdet:openclawImage"] == (PINNED["OPENCLAW_IMAGE"], False)
    assert config["clawdet:caddyImage"] == (PINNED["CADDY_IMAGE"], False)
    assert config["clawdet:browserImage"] == (PINNED["BROWSER_IMAGE"], False)


def test_an_instance_made_before_digests_keeps_its_tagged_image_until_moved(tmp_path):
    config = reconciler(tmp_path, sandbox=False, **PINNED).stack_config(instance(openclaw.OPENCLAW_IMAGE))
    assert config["clawdet:openclawImage"] == (openclaw.OPENCLAW_IMAGE, False)


def test_the_sandbox_keeps_tags(tmp_path):
    sandbox = reconciler(tmp_path, sandbox=True, PUBLIC_URL="http://127.0.0.1:8000")
    config = sandbox.stack_config(instance())
    assert "clawdet:caddyImage" not in config  # the program's default tag applies
    assert "@sha256:" not in config.get("clawdet:openclawImage", ("",))[0]


def test_production_refuses_secrets_this_host_would_make_up(tmp_path):
    """Every worker host shares the platform's secrets; one made up here locks the others out."""
    made_up = reconciler(tmp_path / "a", sandbox=False, **PINNED)  # no SECRET_KEY, no passphrase
    with pytest.raises(
        UserFacingError,
        match="CREDENTIALS_ROOT, GATEWAY_TOKEN_ROOT, PULUMI_CONFIG_PASSPHRASE, SECRET_KEY are not set",
    ) as refused:
        made_up.refuse_host_secrets()
    assert "the same on every host" in refused.value.action
    given = {
        "SECRET_KEY": "s" * 32,
        "PULUMI_CONFIG_PASSPHRASE": "p" * 32,
        "CREDENTIALS_ROOT": "c" * 32,
        "GATEWAY_TOKEN_ROOT": "g" * 32,
    }
    reconciler(tmp_path / "b", sandbox=False, **PINNED, **given).refuse_host_secrets()
