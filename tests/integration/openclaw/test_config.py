"""The gateway config we render is the one the real OpenClaw accepts: checked with its own
`openclaw config validate`, the way the gateway reads it on a server (OPENCLAW_CONFIG_PATH,
read-only, the key from the environment)."""

import json
import subprocess

import pytest

from programs import openclaw
from sandbox import openclaw as openclaw_install


def validate(tmp_path, config: dict) -> dict:
    install = openclaw_install.find()
    if install is None:
        pytest.fail(
            "OpenClaw is not installed for the sandbox: run `make openclaw` (make test does it first)."
        )
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps(config))
    env = install.env(
        {
            "HOME": str(tmp_path / "home"),
            "OPENCLAW_STATE_DIR": str(tmp_path / "state"),
            "OPENCLAW_CONFIG_PATH": str(path),
            "OPENCLAW_CONFIG_READONLY": "1",
            openclaw.LLM_KEY_VARIABLE: "ck_validation_key_0123456789abcdef",
        }
    )
    result = subprocess.run(
        install.command("config", "validate", "--json"), env=env, capture_output=True, text=True, timeout=120
    )
    return json.loads(result.stdout or result.stderr or "{}") | {"returncode": result.returncode}


def test_the_rendered_config_is_valid_for_the_real_gateway(tmp_path):
    config = openclaw.gateway_config(
        fqdn="alice.clawdet.example", llm_base_url="https://clawdet.example/llm/v1", model="grok-4"
    )
    verdict = validate(tmp_path, config)
    assert verdict["valid"] is True and verdict["returncode"] == 0, verdict
    assert verdict["warnings"] == []  # e.g. an unset ${CLAWDET_LLM_API_KEY} would warn


def test_the_real_validator_refuses_an_unknown_key(tmp_path):
    config = openclaw.gateway_config(
        fqdn="alice.clawdet.example", llm_base_url="https://clawdet.example/llm/v1", model="grok-4"
    )
    config["gateway"]["allowInsecureAuth"] = True  # not an OpenClaw key: what a typo looks like
    verdict = validate(tmp_path, config)
    assert verdict["returncode"] != 0 and verdict.get("valid") is not True, verdict
