"""Pulumi.yaml and the example stack file, which the plain `pulumi` CLI reads."""

from __future__ import annotations

import yaml

from programs import ssh_keys
from programs.instance_config import KEYS, to_stack_config
from tests.fixtures import REPO


def test_the_project_runs_the_program_directory_with_the_repo_venv():
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["name"] == "clawdet-instance"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    assert project["stackConfigDir"] == "stacks"
    assert (REPO / project["main"] / "__main__.py").is_file()


def test_the_example_stack_documents_every_key_and_holds_no_secret():
    path = REPO / "stacks" / "Pulumi.example.yaml"
    text = path.read_text()
    config = yaml.safe_load(text)["config"]

    for key in KEYS:
        assert key.full_name in text, f"{key.full_name} is not documented in {path.name}"
        if key.secret:
            assert key.full_name not in config, f"{key.full_name} must be set with --secret, not written here"
            assert f"pulumi config set --secret {key.full_name}" in text
    assert not any(isinstance(value, dict) for value in config.values()), "no encrypted values in an example"
    assert "secure:" not in text.replace("{secure: ...}", "")

    clawdet_values = {name: str(value) for name, value in config.items() if name.startswith("clawdet:")}
    by_name = {key.full_name: key for key in KEYS}
    assert set(clawdet_values) <= set(by_name), "the example uses a key the program does not read"
    fields = {by_name[name].field: value for name, value in clawdet_values.items()}
    fields |= {key.field: fields[key.field] == "true" for key in KEYS if key.kind == "bool"}
    # the secrets the operator sets
    fields |= {"gateway_token": "x" * 32, "llm_api_key": "y" * 16, "ssh_private_key": ssh_keys.generate()}
    written = to_stack_config(**fields)
    assert all(written[name][0] == value for name, value in clawdet_values.items() if value)
