"""The pins the toolchain reads, and the cache directory they name."""

import pytest

from toolchain import engine

PYPROJECT = """
[project]
dependencies = [
    "click>=8.1,<9",
    "pulumi==3.259.0",
    "pulumi-hcloud==1.39.1",
    "pulumi-cloudflare==6.17.0",
    "pulumi-command==1.2.1",
]
"""


def test_pins_include_the_command_provider(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    assert engine.pins(tmp_path / "pyproject.toml") == {
        "pulumi": "3.259.0",
        "hcloud": "1.39.1",
        "cloudflare": "6.17.0",
        "command": "1.2.1",
    }


def test_a_missing_command_pin_is_an_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.replace('    "pulumi-command==1.2.1",\n', ""))
    with pytest.raises(engine.ToolchainError, match="pulumi-command"):
        engine.pins(tmp_path / "pyproject.toml")


def test_the_command_pin_does_not_rename_the_cache():
    versions = {"pulumi": "3.259.0", "hcloud": "1.39.1", "cloudflare": "6.17.0", "command": "1.2.1"}
    key = f"pulumi-3.259.0-hcloud-1.39.1-cloudflare-6.17.0-r{engine.RECIPE}"
    assert engine.cache_key(versions) == key
    assert engine.cache_key({**versions, "command": "1.3.0"}) == key
