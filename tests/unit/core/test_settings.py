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
    types = {"str", "int", "float", "bool", "url", "path", "duration"}
    assert all(v.doc.strip() and v.type in types for v in VARIABLES)


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
        ({}, False),  # no cloud token is a configuration error, never a quiet switch to fake servers
        ({"HCLOUD_TOKEN": "t"}, False),
        ({"CLAWDET_SANDBOX": "true"}, True),
        ({"CLAWDET_SANDBOX": "false"}, False),
    ],
)
def test_sandbox_mode_is_only_ever_asked_for(tmp_path, env, sandbox):
    assert Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), **env}).sandbox is sandbox


SANDBOX = {"CLAWDET_SANDBOX": "true"}


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({"PUBLIC_URL": "https://clawdet.example"}, "PUBLIC_URL is https://clawdet.example, a public site"),
        (
            {"DATABASE_URL": "postgresql://u:p@db.internal/clawdet"},
            "DATABASE_URL is a PostgreSQL server on another host",
        ),
        ({"HCLOUD_TOKEN": "t"}, "HCLOUD_TOKEN is set"),
        ({"CLOUDFLARE_API_TOKEN": "t"}, "CLOUDFLARE_API_TOKEN is set"),
        ({"LLM_PRIMARY_KEY": "real-key"}, "LLM_PRIMARY_URL is https://api.x.ai/v1, a real service"),
        ({"X_CLIENT_ID": "real-app"}, "X_API_BASE_URL is https://api.x.com, a real service"),
        ({"SMTP_HOST": "smtp.example.com"}, "SMTP_HOST is smtp://smtp.example.com, a real service"),
    ],
)
def test_sandbox_mode_is_refused_with_anything_real(tmp_path, env, refusal):
    settings = Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), **SANDBOX, **env})
    assert refusal in settings.sandbox_refusals()
    assert Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), **env}).sandbox_refusals() == []


def test_the_sandbox_on_this_machine_is_fine(tmp_path):
    local = {
        "DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/clawdet",
        "LLM_PRIMARY_URL": "http://127.0.0.2:9000/v1",
        "LLM_PRIMARY_KEY": "sandbox-key",
        "SMTP_HOST": "localhost",
    }
    settings = Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), **SANDBOX, **local})
    assert settings.sandbox_refusals() == []


def test_every_command_refuses_a_sandbox_with_a_real_token(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from clawdet.cli import main

    monkeypatch.setenv("CLAWDET_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLAWDET_SANDBOX", "true")
    monkeypatch.setenv("HCLOUD_TOKEN", "a-real-looking-token")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "HCLOUD_TOKEN is set" in result.output and "a-real-looking-token" not in result.output


def test_secret_values_cover_every_secret_variable(tmp_path):
    env = {v.name: f"value-of-{v.name.lower()}" for v in VARIABLES if v.secret}
    env["DATABASE_URL"] = "sqlite:///" + str(tmp_path / "x.db")
    settings = Settings.from_env({"CLAWDET_DATA_DIR": str(tmp_path), **env})
    secrets = settings.secret_values()
    for name, value in env.items():
        if name != "DATABASE_URL":
            assert value in secrets, name
    assert "value-of" not in repr(settings)


def test_the_sandbox_brings_its_services_as_one_set(monkeypatch):
    import click

    from clawdet.cli.serve import _as_a_set

    sandbox_services = {
        "LLM_PRIMARY_URL": "http://127.0.0.3/v1",
        "LLM_PRIMARY_KEY": "sandbox",
        "SMTP_PORT": "2525",
    }
    for name in (
        "LLM_PRIMARY_URL",
        "SMTP_HOST",
        "X_CLIENT_ID",
        "X_CLIENT_SECRET",
        "SMTP_USER",
        "SMTP_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SMTP_PORT", "587")  # as .env.example has it: replaced, not refused
    monkeypatch.setenv("LLM_PRIMARY_KEY", "a-real-key")
    with pytest.raises(click.ClickException, match="provides LLM_PRIMARY_KEY itself") as refused:
        _as_a_set(sandbox_services)
    assert "a-real-key" not in refused.value.message
    monkeypatch.delenv("LLM_PRIMARY_KEY")
    assert _as_a_set(sandbox_services) == sandbox_services
