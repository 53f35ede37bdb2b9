"""Shared by the LLM proxy and trial chat tests: a sandbox with two LLM upstreams, settings that
point at it, customers with instances, and a real `clawdet web` process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from db.models import Instance, User, utcnow
from db.settings import Settings
from provisioner import credentials, instances
from tests.browser.conftest import free_port, wait_until_up
from tests.sandbox_fixtures import start_sandbox

REPO = Path(__file__).resolve().parents[2]
BACKUP = "backup"


def start_llm_sandbox(path: Path):
    return start_sandbox(path, extra_llm_upstreams=(BACKUP,))


def backup_key(sandbox) -> str:
    return sandbox.describe()["llm_upstreams"][BACKUP]["key"]


def llm_env(sandbox, **extra: str) -> dict[str, str]:
    return {"LLM_PRIMARY_URL": sandbox.llm_url, "LLM_PRIMARY_KEY": sandbox.llm_key,
            "LLM_FALLBACK_URL": sandbox.llm_url_of(BACKUP), "LLM_FALLBACK_KEY": backup_key(sandbox),
            "LLM_TIMEOUT": "10", "TRIAL_MODEL": "sandbox-small", **extra}


def llm_settings(tmp_path: Path, database_url: str, sandbox, **extra: str) -> Settings:
    return Settings.from_env({
        "CLAWDET_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url,
        "SECRET_KEY": "llm-test-secret", "PUBLIC_URL": "http://127.0.0.1:8000",
        **llm_env(sandbox, **extra)}, dotenv=False)


def customer_with_instance(database, secret: str, email: str = "llm@example.com") -> tuple[str, str, str]:
    """(user id, instance id, the instance's LLM key) for a free-beta user with an instance."""
    with database.session() as s:
        user = User(email=email, name="LLM User", terms_accepted_at=utcnow())
        user.mark_free_beta()
        s.add(user)
        s.flush()
        instance = instances.request_instance(s, user, secret=secret)
        s.flush()
        key = credentials.llm_key(secret, instance.id, instance.llm_key_version)
        return user.id, instance.id, key


def instance_row(database, instance_id: str) -> Instance:
    with database.session() as s:
        return s.scalar(select(Instance).where(Instance.id == instance_id))


class LiveServer:
    """`clawdet web` in its own process (waitress), on SQLite."""

    def __init__(self, tmp_path: Path, env: dict[str, str]):
        self.port = free_port()
        self.database_url = f"sqlite:///{tmp_path / 'live' / 'clawdet.db'}"
        self.log_path = tmp_path / "live-server.log"
        self.env = {**os.environ, "CLAWDET_DATA_DIR": str(tmp_path / "live"), "PORT": str(self.port),
                    "DATABASE_URL": self.database_url, "SECRET_KEY": "live-secret", **env}
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self, threads: int = 16) -> "LiveServer":
        command = [sys.executable, "-m", "webapp.cli"]
        subprocess.run([*command, "db", "upgrade"], env=self.env, cwd=REPO, check=True,
                       capture_output=True, timeout=120)
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen([*command, "web", "--port", str(self.port), "--threads", str(threads)],
                                         env=self.env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)
        wait_until_up(f"{self.base}/api/auth/csrf", self.process)  # /api/health also checks the clouds
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text()
