"""Where the providers point and how often the hcloud provider asks about a running action."""

import json

import pytest

from clawdet import cloud
from clawdet.errors import UserFacingError
from clawdet.settings import Settings

REAL_CLOUD = {"HCLOUD_TOKEN": "t", "CLOUDFLARE_API_TOKEN": "c", "CLOUDFLARE_ZONE_ID": "z"}


def settings(tmp_path, **env):
    return Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), **env}, dotenv=False)


def test_the_real_cloud_polls_at_the_providers_default_unless_set(tmp_path):
    target = cloud.resolve(settings(tmp_path, CLAWDET_SANDBOX="false", **REAL_CLOUD))
    assert target.provider_config() == {}
    slower = cloud.resolve(
        settings(tmp_path, CLAWDET_SANDBOX="false", HCLOUD_POLL_INTERVAL="2s", **REAL_CLOUD)
    )
    assert slower.provider_config() == {"hcloud:pollInterval": ("2s", False)}


def test_the_sandbox_finishes_actions_at_once_so_it_is_asked_often(tmp_path):
    description = cloud.sandbox_description_path(settings(tmp_path))
    description.parent.mkdir(parents=True)
    description.write_text(
        json.dumps(
            {
                "hcloud_token": "t",
                "hcloud_url": "http://127.0.0.1:1/v1",
                "cloudflare_token": "c",
                "cloudflare_url": "http://127.0.0.1:2/client/v4",
                "zone_id": "z",
                "zone_name": "clawdet.test",
                "gateway_port": 18789,
                "hcloud_poll_interval": "25ms",
            }
        )
    )
    target = cloud.resolve(settings(tmp_path, CLAWDET_SANDBOX="true"))
    assert target.provider_config() == {"hcloud:pollInterval": ("25ms", False)}
    chosen = cloud.resolve(settings(tmp_path, CLAWDET_SANDBOX="true", HCLOUD_POLL_INTERVAL="1s"))
    assert chosen.provider_config() == {"hcloud:pollInterval": ("1s", False)}


@pytest.mark.parametrize("text", ["fast", "500", "-1s", "1d", "0s", "5ms", "2m", "1s500", "٥٠٠ms"])
def test_a_poll_interval_that_is_no_sensible_duration_is_refused_with_the_next_step(tmp_path, text):
    with pytest.raises(UserFacingError) as refused:
        settings(tmp_path, CLAWDET_SANDBOX="false", HCLOUD_POLL_INTERVAL=text, **REAL_CLOUD)
    assert refused.value.code == "bad_setting"
    assert "HCLOUD_POLL_INTERVAL" in refused.value.message and ".env.example" in refused.value.action


@pytest.mark.parametrize("text", ["10ms", "500ms", "2s", "1.5s", "1m", "1s500ms"])
def test_durations_as_go_writes_them_are_taken(tmp_path, text):
    assert settings(tmp_path, HCLOUD_POLL_INTERVAL=text).cloud_env["HCLOUD_POLL_INTERVAL"] == text


def test_the_sandbox_asks_to_be_polled_as_often_as_its_clock_makes_sense():
    from sandbox.clock import make_clock

    assert make_clock("instant", boot=0, action=0).poll_interval() == "50ms"
    assert make_clock("hetzner").poll_interval() == "500ms"  # the real provider's default
    assert make_clock("hetzner", 20).poll_interval() == "25ms"  # as many requests per action
