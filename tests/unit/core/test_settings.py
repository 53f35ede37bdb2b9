"""One declaration of every setting: .env.example is written from it, the code reads nothing else."""

import re

import pytest

from clawdet.settings import BY_NAME, VARIABLES, Settings, env_example
from tests.fixtures import REPO

READS = re.compile(r"""(?:env|environ)\.get\(\s*["']([A-Z][A-Z0-9_]+)["']|envvar=["']([A-Z][A-Z0-9_]+)["']""")
NOT_OURS = {"PATH", "HOME", "PULUMI_HOME", "XDG_CACHE_HOME", "GOPATH", "GOFLAGS"}  # other tools' own


def test_env_example_is_generated_from_the_declaration():
    written = (REPO / ".env.example").read_text()
    assert written == env_example(), "regenerate it: .venv/bin/python -m clawdet.settings > .env.example"


def test_every_variable_the_code_reads_is_declared():
    read = set()
    for package in ("clawdet", "webapp", "db", "programs"):
        for path in (REPO / package).rglob("*.py"):
            for match in READS.finditer(path.read_text()):
                read.add(match.group(1) or match.group(2))
    undeclared = sorted(read - set(BY_NAME) - NOT_OURS)
    assert undeclared == [], f"declare these in clawdet/settings.py VARIABLES: {undeclared}"


def test_each_variable_is_declared_once_with_a_doc():
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))
    assert all(v.doc.strip() and v.type in {"str", "int", "float", "bool", "url", "path"} for v in VARIABLES)


def test_defaults_and_types(tmp_path):
    settings = Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), "PORT": "8123", "FREE_BETA": "no"})
    assert settings.port == 8123 and settings.free_beta is False and settings.free_beta_cap == 50
    assert settings.public_url == "http://127.0.0.1:8123"
    assert settings.llm_proxy_url == "http://127.0.0.1:8123/llm/v1"  # what a sandbox gateway really reaches
    assert settings.database_url == f"sqlite:///{tmp_path / 'clawdet.db'}"


def test_the_default_data_dir_is_the_checkouts_wherever_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({}, dotenv=False)
    assert settings.data_dir == REPO / ".data"


def test_secrets_are_taken_as_given_and_blank_counts_as_unset(tmp_path):
    env = {"CLAWDET_DATA_DIR": str(tmp_path), "SECRET_KEY": " padded key ", "BASE_DOMAIN": "  "}
    settings = Settings.from_env(env)
    assert settings.secret_key == " padded key " and settings.base_domain == "clawdet.test"


def test_a_port_given_on_the_command_line_moves_the_urls(tmp_path):
    settings = Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), "PORT": "8000"}, PORT="8125")
    assert settings.port == 8125 and settings.public_url == "http://127.0.0.1:8125"
    assert settings.llm_proxy_url == "http://127.0.0.1:8125/llm/v1"


@pytest.mark.parametrize(
    ("env", "sandbox"),
    [
        ({}, True),
        ({"HCLOUD_TOKEN": "t"}, False),
        ({"HCLOUD_TOKEN": "t", "CLAWDET_SANDBOX": "true"}, True),
        ({"CLAWDET_SANDBOX": "false"}, False),
    ],
)
def test_sandbox_mode_is_decided_in_one_place(tmp_path, env, sandbox):
    assert Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), **env}).sandbox is sandbox


def test_secret_values_cover_every_secret_variable(tmp_path):
    env = {v.name: f"value-of-{v.name.lower()}" for v in VARIABLES if v.secret}
    env["DATABASE_URL"] = "sqlite:///" + str(tmp_path / "x.db")
    settings = Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), **env})
    secrets = settings.secret_values()
    for name, value in env.items():
        if name != "DATABASE_URL":
            assert value in secrets, name
    assert "value-of" not in repr(settings)
