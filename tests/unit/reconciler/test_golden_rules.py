"""`clawdet golden build` and `show` without an engine: a build refuses what a worker would
refuse (made-up secrets, images without a digest) and an empty CONTROL_PLANE_SSH_CIDRS before it
touches Pulumi; the snapshot an instance boots from is the one of exactly its images; `show`
reports an API error in one line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from clawdet import cloud
from clawdet.cli import golden as golden_cli
from clawdet.cli import main
from clawdet.errors import UserFacingError
from clawdet.reconciler import golden
from clawdet.settings import Settings
from programs import ssh_keys
from programs.cloud_init import BROWSER_IMAGE, CADDY_IMAGE
from programs.golden.labels import images_hash
from tests.fixtures.cloud import unreached_target
from tests.unit.reconciler.test_image_digests import PINNED

SECRETS = {
    "SECRET_KEY": "k" * 32,
    "CREDENTIALS_ROOT": "c" * 32,
    "GATEWAY_TOKEN_ROOT": "g" * 32,
    "PULUMI_CONFIG_PASSPHRASE": "p" * 32,
    "INSTANCE_SSH_PRIVATE_KEY": ssh_keys.generate(),
}


class ReachedPulumi(Exception):
    pass


@pytest.fixture(autouse=True)
def no_pulumi(monkeypatch):
    def stacks(*_args):
        raise ReachedPulumi()

    monkeypatch.setattr(golden, "Stacks", stacks)


def settings(tmp_path, **env: str) -> Settings:
    return Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), **env}, dotenv=False)


def build(tmp_path, target: cloud.CloudTarget, **env: str) -> None:
    golden.build(settings(tmp_path, **env), target, "install-1", "hel1")


def test_outside_the_sandbox_made_up_secrets_are_refused(tmp_path):
    without_key = {k: v for k, v in SECRETS.items() if k != "INSTANCE_SSH_PRIVATE_KEY"}
    with pytest.raises(UserFacingError, match="INSTANCE_SSH_PRIVATE_KEY is not set") as refused:
        build(tmp_path, unreached_target(), **without_key, **PINNED)
    assert refused.value.code == "secrets_not_set"
    with pytest.raises(ReachedPulumi):
        build(tmp_path, unreached_target(), **SECRETS, **PINNED)
    with pytest.raises(ReachedPulumi):  # the sandbox makes up its own
        build(tmp_path, unreached_target(sandbox=True), **without_key)


@pytest.mark.parametrize("setting", ["OPENCLAW_IMAGE", "CADDY_IMAGE", "BROWSER_IMAGE"])
def test_outside_the_sandbox_images_without_a_digest_are_refused(tmp_path, setting):
    tagged = {**PINNED, setting: PINNED[setting].partition("@")[0]}
    with pytest.raises(UserFacingError, match=f"{setting} is .* not pinned by digest") as refused:
        build(tmp_path, unreached_target(), **SECRETS, **tagged)
    assert refused.value.code == "image_not_pinned"
    with pytest.raises(ReachedPulumi):
        build(tmp_path, unreached_target(sandbox=True), **SECRETS, **tagged)


def test_no_build_without_control_plane_ssh_cidrs(tmp_path):
    for target in (
        unreached_target(control_plane_ssh_cidrs=""),
        unreached_target(sandbox=True, control_plane_ssh_cidrs=""),
    ):
        with pytest.raises(UserFacingError, match="CONTROL_PLANE_SSH_CIDRS") as refused:
            build(tmp_path, target, **SECRETS, **PINNED)
        assert refused.value.code == "ssh_cidrs_not_set"


class FakeHetzner:
    selectors: list[str] = []

    def __init__(self, endpoint, token):
        pass

    def newest_snapshot(self, selector):
        self.selectors.append(selector)
        return {"id": 300} if f"clawdet-images={images_hash(self.wanted)}" in selector else None

    def close(self):
        pass


def test_newest_asks_for_the_snapshot_of_exactly_these_images(monkeypatch, tmp_path):
    monkeypatch.setattr(golden.cloud, "Hetzner", FakeHetzner)
    target, openclaw = unreached_target(), PINNED["OPENCLAW_IMAGE"]
    FakeHetzner.wanted = [openclaw, CADDY_IMAGE, BROWSER_IMAGE]
    assert golden.newest(target, "install-1", openclaw, "hel1") == 300  # as the reconciler calls it
    selector = FakeHetzner.selectors[-1].split(",")
    assert "clawdet-installation=install-1" in selector and "clawdet-region=hel1" in selector
    assert f"clawdet-golden={golden.openclaw_version(openclaw)}" in selector
    assert golden.newest(target, "install-1", openclaw, "hel1", caddy_image=PINNED["CADDY_IMAGE"]) is None
    other_digest = openclaw.partition("@")[0] + "@sha256:" + "b" * 64
    assert golden.newest(target, "install-1", other_digest, "hel1") is None

    # what `golden build` and `golden show` take from the settings
    images = golden.images_of(settings(tmp_path, **SECRETS, **PINNED))
    assert images == [PINNED["OPENCLAW_IMAGE"], PINNED["CADDY_IMAGE"], PINNED["BROWSER_IMAGE"]]
    FakeHetzner.wanted = images
    found = golden.newest(
        target, "install-1", images[0], "hel1", caddy_image=images[1], browser_image=images[2]
    )
    assert found == 300


def test_show_reports_an_api_error_in_one_line(monkeypatch, tmp_path):
    def refused(*_args, **_kwargs):
        raise cloud.ApiError("hetzner", 401, "unable to authenticate")

    monkeypatch.setattr(golden, "newest", refused)
    monkeypatch.setattr(golden_cli, "_settings", lambda: settings(tmp_path, **SECRETS))
    monkeypatch.setattr(golden_cli, "_target", unreached_target)
    monkeypatch.setattr(golden_cli, "_database", lambda: type("Db", (), {"installation_id": "install-1"})())
    result = CliRunner().invoke(main, ["golden", "show", "hel1"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "Could not look up the golden snapshot in hel1: hetzner answered 401" in result.output


def test_a_new_server_boots_from_the_snapshot_of_the_settings_images(monkeypatch, tmp_path):
    from tests.unit.reconciler.test_image_digests import reconciler as make_reconciler

    monkeypatch.setattr(golden.cloud, "Hetzner", FakeHetzner)
    reconciler = make_reconciler(tmp_path, sandbox=False, **SECRETS, **PINNED)
    FakeHetzner.wanted = golden.images_of(reconciler.settings)
    assert reconciler.newest_images("hel1") == ("300", PINNED["OPENCLAW_IMAGE"])
