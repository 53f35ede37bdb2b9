"""Configuration from the environment (and a `.env` file), read once per process.

Every variable is listed in `.env.example`. Nothing here knows about Flask or Pulumi; the web
app, the workers and the CLI all build their view of the world from one `Settings`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import load_dotenv

REPO_ROOT = Path(__file__).resolve().parent.parent


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    secret_key: str
    public_url: str
    base_domain: str
    free_beta: bool
    free_beta_cap: int
    ratelimit_storage_uri: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, *, dotenv: bool = True) -> "Settings":
        if env is None:
            if dotenv:
                load_dotenv(REPO_ROOT / ".env", override=False)
            env = dict(os.environ)
        data_dir = Path(env.get("CLAWDET_DATA_DIR") or REPO_ROOT / ".data").resolve()
        database_url = env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'clawdet.db'}"
        return cls(
            data_dir=data_dir,
            database_url=normalise_database_url(database_url),
            secret_key=env.get("SECRET_KEY") or _dev_secret_key(data_dir),
            public_url=(env.get("PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/"),
            base_domain=env.get("BASE_DOMAIN") or "clawdet.test",
            free_beta=_bool(env.get("FREE_BETA"), True),
            free_beta_cap=int(env.get("FREE_BETA_CAP") or 50),
            ratelimit_storage_uri=env.get("RATELIMIT_STORAGE_URI") or "memory://",
            extra={k: v for k, v in env.items() if k.startswith(("CLAWDET_", "X_", "LLM_", "SMTP_"))},
        )


def normalise_database_url(url: str) -> str:
    """Accept the usual `postgres://` spellings and always use psycopg 3."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _dev_secret_key(data_dir: Path) -> str:
    """A per-installation random key kept in the data directory, so `make run` needs no set-up
    and sessions survive restarts. Production sets SECRET_KEY."""
    import secrets

    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this installation won the race
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
