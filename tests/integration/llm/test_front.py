"""The production layout of compose.yaml on loopback: Caddy with deploy/front.Caddyfile in front
of a `clawdet web` and a `clawdet proxy` process (separate data dirs, one PostgreSQL). Pages and
the JSON API reach the web app; the LLM proxy and the progress streams reach the proxy,
streamed through Caddy as they happen."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import httpx
import openai
import pytest

from db.engine import Database
from tests.fixtures import REPO
from tests.fixtures.browser import free_port, wait_until_up
from tests.fixtures.llm import customer_with_instance, llm_env

pytestmark = pytest.mark.postgres


def front_config(web_port: int, proxy_port: int, front_port: int) -> str:
    """deploy/front.Caddyfile with loopback addresses for compose's service names."""
    text = (REPO / "deploy" / "front.Caddyfile").read_text()
    text, found = re.subn(r"dynamic a proxy 8001 \{[^}]*\}", f"to 127.0.0.1:{proxy_port}", text)
    assert found == 1, "the front's proxy upstream changed; update this test"
    text = text.replace("web:8000", f"127.0.0.1:{web_port}").replace(":8000 {", f":{front_port} {{")
    return text


class Layout:
    def __init__(self, tmp_path, database_url: str, sandbox):
        if shutil.which("caddy") is None:
            pytest.fail("Caddy is missing: run `bash tests/system-deps.sh` (apt-get install caddy)")
        self.tmp, self.processes = tmp_path, {}
        self.ports = {name: free_port() for name in ("web", "proxy", "front")}
        self.base = f"http://127.0.0.1:{self.ports['front']}"
        self.env = {
            **os.environ,
            **llm_env(sandbox),
            "DATABASE_URL": database_url,
            "SECRET_KEY": "front-secret",
            "PUBLIC_URL": self.base,
            "TRUSTED_PROXIES": "1",
        }
        clawdet = [sys.executable, "-m", "clawdet.cli"]
        subprocess.run([*clawdet, "db", "upgrade"], env=self.env, cwd=REPO, check=True, capture_output=True)
        for name in ("web", "proxy"):  # two hosts: nothing shared on disk
            env = {**self.env, "CLAWDET_DATA_DIR": str(tmp_path / name)}
            self._start(name, [*clawdet, name, "--port", str(self.ports[name])], env)
        config = tmp_path / "Caddyfile"
        config.write_text(front_config(self.ports["web"], self.ports["proxy"], self.ports["front"]))
        command = ["caddy", "run", "--config", str(config), "--adapter", "caddyfile"]
        self._start("front", command, {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)})
        for name in ("web", "proxy"):
            wait_until_up(f"http://127.0.0.1:{self.ports[name]}/llm/v1/models", self.processes[name])
        wait_until_up(f"{self.base}/api/auth/csrf", self.processes["front"])

    def _start(self, name: str, command: list[str], env: dict) -> None:
        log = open(self.tmp / f"{name}.log", "w")
        self.processes[name] = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.terminate()
        process.wait(timeout=90)

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)


@pytest.fixture
def layout(tmp_path, pg_url, llm_sandbox):
    layout = Layout(tmp_path, pg_url, llm_sandbox)
    yield layout
    layout.close()


def test_the_front_sends_streams_to_the_proxy_and_the_rest_to_the_web_app(layout, pg_url, llm_sandbox):
    database = Database(pg_url)
    key = customer_with_instance(database, "front-secret")[2]
    database.dispose()
    llm_sandbox.llm.chunk_delay = 0.1
    client = openai.OpenAI(api_key=key, base_url=f"{layout.base}/llm/v1", max_retries=0, timeout=30)
    started, arrivals = time.monotonic(), []
    stream = client.chat.completions.create(
        model="sandbox-small", messages=[{"role": "user", "content": "through the front door"}], stream=True
    )
    words = []
    for chunk in stream:
        arrivals.append(time.monotonic() - started)
        words += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert "".join(words).startswith("Sandbox reply")
    assert arrivals[1] < arrivals[-1] - 0.5  # Caddy passed the words on as they came

    http = httpx.Client(base_url=layout.base, timeout=30)
    token = http.get("/api/auth/csrf").json()["csrfToken"]
    registered = http.post(
        "/api/auth/register",
        json={"name": "Fran", "email": "fran@example.com", "password": "correct horse"},
        headers={"X-CSRFToken": token},
    )
    assert registered.status_code == 201, registered.text
    token = registered.json().get("csrfToken", token)
    http.post(
        "/api/auth/details",
        json={"email": "fran@example.com", "acceptTerms": True},
        headers={"X-CSRFToken": token},
    )
    created = http.post("/api/instances", json={}, headers={"X-CSRFToken": token})
    assert created.status_code == 202, created.text
    events = f"/api/instances/{created.json()['instance']['id']}/events"
    with http.stream("GET", events) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        next(line for line in lines if line == "event: state")
        assert json.loads(next(lines)[6:])["inFlight"] is True

    layout.stop("proxy")  # only the proxy serves the streams behind the front
    assert http.get("/api/auth/csrf").status_code == 200
    gone = httpx.get(f"{layout.base}/llm/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert gone.status_code == 502
    assert http.get(events).status_code == 502
