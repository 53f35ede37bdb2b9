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


# Where the real clouds are; when HCLOUD_TOKEN is unset, the sandbox cloud stands in.
CLOUD_VARIABLES = ("HCLOUD_TOKEN", "HCLOUD_ENDPOINT", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_BASE_URL",
                   "CLOUDFLARE_ZONE_ID", "HEALTH_URL_TEMPLATE")


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str = field(repr=False)
    secret_key: str = field(repr=False)
    public_url: str
    base_domain: str
    free_beta: bool
    free_beta_cap: int
    ratelimit_storage_uri: str
    trusted_proxies: int = 0
    pulumi_backend_url: str = ""
    pulumi_passphrase: str = field(default="", repr=False)
    project_dir: Path = REPO_ROOT
    instance_model: str = "grok-4"
    llm_proxy_url: str = ""
    operator_ssh_cidrs: str = ""
    hcloud_ssh_keys: str = ""
    cloud_env: dict[str, str] = field(default_factory=dict, repr=False)
    # Continue with X (OAuth 2.0 + PKCE). Empty client id: the button is hidden.
    x_client_id: str = ""
    x_client_secret: str = field(default="", repr=False)
    x_redirect_uri: str = ""
    x_authorize_url: str = "https://x.com/i/oauth2/authorize"
    x_api_base_url: str = "https://api.x.com"
    # The LLM proxy's upstreams (OpenAI-compatible) and the platform's keys for them.
    llm_primary_url: str = "https://api.x.ai/v1"
    llm_primary_key: str = field(default="", repr=False)
    llm_fallback_url: str = ""
    llm_fallback_key: str = field(default="", repr=False)
    llm_timeout: float = 60.0
    llm_rate_limit: str = "120 per minute"
    trial_model: str = "grok-3-mini"
    trial_messages: int = 5
    # Operations: outgoing email (SMTP), health alert debounce, logs.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_from: str = "Clawdet <noreply@clawdet.test>"
    smtp_starttls: bool = True
    smtp_timeout: float = 10.0
    mail_max_attempts: int = 6
    alert_debounce_minutes: int = 30
    log_format: str = "json"
    log_level: str = "INFO"
    metrics_token: str = field(default="", repr=False)

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
            secret_key=env.get("SECRET_KEY") or _installation_secret(data_dir, "secret_key"),
            public_url=(env.get("PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/"),
            base_domain=env.get("BASE_DOMAIN") or "clawdet.test",
            free_beta=_bool(env.get("FREE_BETA"), True),
            free_beta_cap=int(env.get("FREE_BETA_CAP") or 50),
            ratelimit_storage_uri=env.get("RATELIMIT_STORAGE_URI") or "memory://",
            trusted_proxies=int(env.get("TRUSTED_PROXIES") or 0),
            pulumi_backend_url=env.get("PULUMI_BACKEND_URL") or f"file://{data_dir / 'pulumi-state'}",
            pulumi_passphrase=env.get("PULUMI_CONFIG_PASSPHRASE")
            or _installation_secret(data_dir, "pulumi_passphrase"),
            project_dir=Path(env.get("CLAWDET_PROJECT_DIR") or REPO_ROOT).resolve(),
            instance_model=env.get("INSTANCE_MODEL") or "grok-4",
            llm_proxy_url=env.get("LLM_PROXY_URL")
            or (env.get("PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/") + "/llm/v1",
            operator_ssh_cidrs=env.get("OPERATOR_SSH_CIDRS") or "",
            hcloud_ssh_keys=env.get("HCLOUD_SSH_KEYS") or "",
            cloud_env={k: env[k] for k in CLOUD_VARIABLES if env.get(k)},
            x_client_id=env.get("X_CLIENT_ID") or "",
            x_client_secret=env.get("X_CLIENT_SECRET") or "",
            x_redirect_uri=env.get("X_REDIRECT_URI") or "",
            x_authorize_url=env.get("X_AUTHORIZE_URL") or "https://x.com/i/oauth2/authorize",
            x_api_base_url=(env.get("X_API_BASE_URL") or "https://api.x.com").rstrip("/"),
            llm_primary_url=(env.get("LLM_PRIMARY_URL") or "https://api.x.ai/v1").rstrip("/"),
            llm_primary_key=env.get("LLM_PRIMARY_KEY") or "",
            llm_fallback_url=(env.get("LLM_FALLBACK_URL") or "").rstrip("/"),
            llm_fallback_key=env.get("LLM_FALLBACK_KEY") or "",
            llm_timeout=float(env.get("LLM_TIMEOUT") or 60),
            llm_rate_limit=env.get("LLM_RATE_LIMIT") or "120 per minute",
            trial_model=env.get("TRIAL_MODEL") or "grok-3-mini",
            trial_messages=int(env.get("TRIAL_MESSAGES") or 5),
            smtp_host=env.get("SMTP_HOST") or "",
            smtp_port=int(env.get("SMTP_PORT") or 587),
            smtp_user=env.get("SMTP_USER") or "",
            smtp_password=env.get("SMTP_PASSWORD") or "",
            smtp_from=env.get("SMTP_FROM") or f"Clawdet <noreply@{env.get('BASE_DOMAIN') or 'clawdet.test'}>",
            smtp_starttls=_bool(env.get("SMTP_STARTTLS"), True),
            smtp_timeout=float(env.get("SMTP_TIMEOUT") or 10),
            mail_max_attempts=int(env.get("MAIL_MAX_ATTEMPTS") or 6),
            alert_debounce_minutes=int(env.get("ALERT_DEBOUNCE_MINUTES") or 30),
            log_format=(env.get("LOG_FORMAT") or "json").lower(),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            metrics_token=env.get("METRICS_TOKEN") or "",
        )


def normalise_database_url(url: str) -> str:
    """Accept the usual `postgres://` spellings and always use psycopg 3."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _installation_secret(data_dir: Path, name: str) -> str:
    """A per-installation random secret kept in the data directory, so `make run` needs no
    set-up and sessions and stacks survive restarts. Production sets the variable."""
    import secrets

    path = data_dir / name
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
