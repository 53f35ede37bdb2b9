"""Configuration from the environment (and a `.env` file), read once per process.

`VARIABLES` declares every variable once: its name, type, default, whether it is a secret, and a
one-line doc. `Settings.from_env` reads them, `.env.example` is generated from them
(`python -m clawdet.settings > .env.example`; a test checks it), and the log redactor masks the
values of the secret ones. Nothing here knows about Flask or Pulumi.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import load_dotenv
from sqlalchemy.engine import make_url

from clawdet.errors import UserFacingError
from programs import ssh_keys

REPO_ROOT = Path(__file__).resolve().parent.parent

Parse = Callable[[str], Any]


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _url(value: str) -> str:
    return value.rstrip("/")


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def _duration(value: str) -> str:
    """A duration as Go writes it (500ms, 2s, 1m30s), between 10ms and 60s: what the hcloud
    provider polls at (0 would poll without pause and spend the API's rate limit)."""
    text = value.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + unit for n, unit in parts) != text:
        raise ValueError("not a duration; write it like 500ms or 2s")
    seconds = sum(float(n) * _SECONDS[unit] for n, unit in parts)
    if not 0.01 <= seconds <= 60:
        raise ValueError("must be between 10ms and 60s")
    return text


TIERS = frozenset({"web", "proxy", "worker"})  # `clawdet web`, `clawdet proxy`, `clawdet worker`
WORKERS = frozenset({"worker"})
WEB_AND_WORKERS = frozenset({"web", "worker"})


@dataclass(frozen=True)
class Variable:
    name: str
    doc: str
    default: str = ""  # as written in .env.example; "" means unset (see the doc for what applies)
    type: str = "str"  # str, int, float, bool, url, path
    secret: bool = False
    section: str = "Core"
    held_by: frozenset[str] = TIERS  # the processes that may hold it; the others refuse to start with it
    example: str | None = None  # what .env.example shows, when not the default

    @property
    def parse(self) -> Parse:
        return {"int": int, "float": float, "bool": _bool, "url": _url, "duration": _duration}.get(
            self.type, str
        )


V = Variable
VARIABLES: tuple[Variable, ...] = (
    # -- Core
    V(
        "CLAWDET_DATA_DIR",
        "Where the SQLite database, Pulumi state, sandbox state and dev secrets live. Default: "
        ".data in this checkout, wherever the command runs from.",
        type="path",
    ),
    V(
        "CLAWDET_PROJECT_DIR",
        "The Pulumi project (Pulumi.yaml, programs/, stacks/). Default: this checkout.",
        type="path",
    ),
    V(
        "DATABASE_URL",
        "SQLite in the data dir by default; production: postgresql://user:pass@host:5432/clawdet.",
        secret=True,
    ),
    V(
        "SECRET_KEY",
        "Signs sessions, CSRF tokens and email links (rotating it ends sessions, nothing else). "
        "Unset: a random key kept in the data dir.",
        secret=True,
    ),
    V(
        "CREDENTIALS_ROOT",
        "Workers only: derives each instance's LLM proxy key and backup key. Keep it with your "
        "backups; losing it means rotating every instance's key. Unset: a random root kept in the "
        "data dir.",
        secret=True,
        held_by=WORKERS,
    ),
    V(
        "GATEWAY_TOKEN_ROOT",
        "Workers and the web app (which shows each owner their token): derives each instance's "
        "gateway token. Unset: a random root kept in the data dir.",
        secret=True,
        held_by=WEB_AND_WORKERS,
    ),
    V(
        "PUBLIC_URL",
        "The address people use; https:// turns on Secure cookies and HSTS. Default: http://127.0.0.1:$PORT.",
        type="url",
    ),
    V("PORT", "Port of `clawdet web` and `make run`.", "8000", "int"),
    V("BASE_DOMAIN", "Customer instances live at https://<name>.<BASE_DOMAIN>.", "clawdet.test"),
    V("FREE_BETA", "New accounts get the free beta plan, up to FREE_BETA_CAP accounts.", "true", "bool"),
    V(
        "FREE_BETA_CAP",
        "How many accounts the free beta takes (the admin console shows the cap).",
        "50",
        "int",
    ),
    V(
        "TRUSTED_PROXIES",
        "Reverse proxies in front of the web app that set X-Forwarded-For (0: none); "
        "client IPs drive rate limits.",
        "0",
        "int",
    ),
    V(
        "RATELIMIT_STORAGE_URI",
        "Flask-Limiter storage; memory:// is per process, use redis://... with several web processes.",
        "memory://",
    ),
    V(
        "CLAWDET_SANDBOX",
        "true: the sandbox cloud stands in for Hetzner, Cloudflare, X, the LLM upstream and mail "
        "(`make run` sets it). Refused with an https PUBLIC_URL, a database on another host, "
        "or any real service's credentials. Unset: the real clouds.",
        type="bool",
    ),
    V(
        "SANDBOX_REAL_GATEWAYS",
        "In sandbox mode, how many fake servers run the real OpenClaw gateway (~1 GB each); the "
        "others get a light stand-in.",
        "2",
        "int",
    ),
    # -- Cloud
    V(
        "HCLOUD_TOKEN",
        "Hetzner Cloud API token (read/write). Set it, and the Cloudflare variables, to run real instances.",
        secret=True,
        held_by=WORKERS,
        section="Cloud",
    ),
    V(
        "HCLOUD_ENDPOINT",
        "Hetzner Cloud API base URL.",
        "https://api.hetzner.cloud/v1",
        "str",
        section="Cloud",
    ),
    V(
        "HCLOUD_POLL_INTERVAL",
        "How soon the hcloud provider first asks whether a running action finished (its "
        "pollInterval, 10ms to 60s, e.g. 500ms or 2s; it backs off from there). Empty: the provider's "
        "own default, 500ms. Raise it when the workers meet Hetzner's rate limit (3,600 requests an "
        "hour per project). Against the sandbox, empty means the sandbox's own (50ms: its actions "
        "are quick).",
        type="duration",
        section="Cloud",
    ),
    V(
        "HCLOUD_SSH_KEYS",
        "Comma-separated Hetzner SSH key names or ids put on every server (break-glass access).",
        section="Cloud",
    ),
    V(
        "OPERATOR_SSH_CIDRS",
        "Comma-separated CIDRs of operators allowed to reach port 22 of customer servers.",
        section="Cloud",
    ),
    V(
        "CONTROL_PLANE_SSH_CIDRS",
        "Comma-separated CIDRs the workers connect from: servers open SSH only to them (and "
        "OPERATOR_SSH_CIDRS). Required outside the sandbox (there: 127.0.0.0/8); unset, "
        "instances are not provisioned rather than open SSH to the world.",
        section="Cloud",
    ),
    V(
        "WARM_POOL",
        "Booted servers kept waiting per tier and region, so a new instance adopts one instead of "
        "waiting for a server to boot: comma-separated tier:region=count, e.g. pro:hel1=2. "
        "Each costs its server's price while it waits (admin console, Warm pool). Default: none.",
        section="Cloud",
    ),
    V(
        "INSTANCE_SSH_PORT",
        "The SSH port of customer servers (the sandbox sets its own).",
        "22",
        "int",
        section="Cloud",
    ),
    V(
        "INSTANCE_SSH_PRIVATE_KEY",
        "The platform's SSH key (OpenSSH ed25519; newlines may be written as \\n) that pushes the "
        "app layer to servers. Unset: one is generated and kept in the data dir; back it up with "
        "the database.",
        secret=True,
        held_by=WORKERS,
        section="Cloud",
    ),
    V(
        "PAUSED_PAGE_IPV4",
        "The web app's public IPv4: a paused instance's name points here and shows the paused "
        "page (sandbox: 127.0.0.1).",
        section="Cloud",
    ),
    V(
        "CLOUDFLARE_API_TOKEN",
        "Cloudflare API token with DNS edit on the zone.",
        secret=True,
        held_by=WORKERS,
        section="Cloud",
    ),
    V("CLOUDFLARE_ZONE_ID", "The Cloudflare zone of BASE_DOMAIN.", section="Cloud"),
    V(
        "CLOUDFLARE_BASE_URL",
        "Cloudflare API base URL.",
        "https://api.cloudflare.com/client/v4",
        "str",
        section="Cloud",
    ),
    V(
        "HEALTH_URL_TEMPLATE",
        "Where workers probe a gateway ({fqdn}, {ipv4}). Default: "
        "https://{fqdn}/healthz, or the sandbox gateway's address.",
        section="Cloud",
    ),
    # -- Pulumi
    V(
        "PULUMI_BACKEND_URL",
        "Pulumi state backend. Default: with a PostgreSQL DATABASE_URL, the same database "
        "(postgres://…?table=pulumi_state), so every worker host shares it; with SQLite, "
        "file://<data dir>/pulumi-state.",
        section="Pulumi",
    ),
    V(
        "PULUMI_CONFIG_PASSPHRASE",
        "Encrypts the secrets in stack files. Unset: a random one kept in the "
        "data dir; back it up with the database.",
        secret=True,
        held_by=WORKERS,
        section="Pulumi",
    ),
    V("INSTANCE_MODEL", "The default model of every customer's assistant.", "grok-4", section="Pulumi"),
    V(
        "OPENCLAW_IMAGE",
        "The OpenClaw image every instance runs, pinned (a tag or @sha256 digest). Unset: the "
        "version this release of Clawdet pins (programs/openclaw.py). A change updates in place. "
        "Real servers need name:tag@sha256:<digest> (from `docker buildx imagetools inspect "
        "<image>` or `crane digest <image>`); only the sandbox runs a bare tag.",
        section="Pulumi",
    ),
    V(
        "CADDY_IMAGE",
        "The Caddy image in front of every gateway, pinned like OPENCLAW_IMAGE (digest required "
        "outside the sandbox). Unset: the tag programs/cloud_init.py names.",
        section="Pulumi",
    ),
    V(
        "BROWSER_IMAGE",
        "The headless Chromium image of the enterprise tier, pinned like OPENCLAW_IMAGE (digest "
        "required outside the sandbox). Unset: the tag programs/cloud_init.py names.",
        section="Pulumi",
    ),
    V(
        "LLM_PROXY_URL",
        "The LLM proxy's address as customer gateways reach it. Default: $PUBLIC_URL/llm/v1.",
        type="str",
        section="Pulumi",
    ),
    # -- Email
    V(
        "SMTP_HOST",
        "Outgoing mail server. Unset: mail stays queued (sandbox mode: a local sink at /_sandbox/mail).",
        section="Email",
    ),
    V("SMTP_PORT", "SMTP port.", "587", "int", section="Email"),
    V("SMTP_USER", "SMTP user name.", section="Email"),
    V("SMTP_PASSWORD", "SMTP password.", secret=True, section="Email"),
    V("SMTP_FROM", "The From header. Default: Clawdet <noreply@BASE_DOMAIN>.", section="Email"),
    V(
        "SMTP_STARTTLS",
        "Upgrade the connection with STARTTLS (true for port 587).",
        "true",
        "bool",
        section="Email",
    ),
    V("SMTP_TIMEOUT", "Seconds one SMTP conversation may take.", "10", "float", section="Email"),
    V(
        "MAIL_MAX_ATTEMPTS",
        "Tries per email before it is marked failed (backoff 30 s doubling to 1 h).",
        "6",
        "int",
        section="Email",
    ),
    V(
        "ALERT_DEBOUNCE_MINUTES",
        "At most one 'instance down' alert per instance per this many minutes.",
        "30",
        "int",
        section="Email",
    ),
    # -- Logs and metrics
    V(
        "LOG_FORMAT",
        "json (one object per line, for log shippers) or console (for a terminal).",
        "json",
        section="Logs and metrics",
    ),
    V("LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR.", "INFO", section="Logs and metrics"),
    V(
        "METRICS_TOKEN",
        "When set, GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'.",
        secret=True,
        section="Logs and metrics",
    ),
    # -- Continue with X
    V(
        "X_CLIENT_ID",
        "OAuth 2.0 client id from the X developer portal. Unset: no 'Continue with X'.",
        section="Continue with X",
    ),
    V("X_CLIENT_SECRET", "OAuth 2.0 client secret.", secret=True, section="Continue with X"),
    V(
        "X_REDIRECT_URI",
        "Registered callback. Default: $PUBLIC_URL/api/auth/x/callback.",
        section="Continue with X",
    ),
    V(
        "X_AUTHORIZE_URL",
        "Where people approve the sign-in.",
        "https://x.com/i/oauth2/authorize",
        section="Continue with X",
    ),
    V(
        "X_API_BASE_URL",
        "Where the token exchange and /2/users/me calls go.",
        "https://api.x.com",
        "url",
        section="Continue with X",
    ),
    # -- LLM proxy
    V(
        "LLM_PRIMARY_URL",
        "OpenAI-compatible upstream the proxy forwards to.",
        "https://api.x.ai/v1",
        "url",
        section="LLM proxy",
    ),
    V(
        "LLM_PRIMARY_KEY",
        "The platform's key for it (never shown to customers, never logged).",
        secret=True,
        section="LLM proxy",
    ),
    V(
        "LLM_FALLBACK_URL",
        "Tried when the primary fails before anything was sent.",
        type="url",
        section="LLM proxy",
    ),
    V("LLM_FALLBACK_KEY", "The platform's key for the fallback.", secret=True, section="LLM proxy"),
    V(
        "LLM_TIMEOUT",
        "Read timeout in seconds between bytes of an answer (connect: 5 s).",
        "60",
        "float",
        section="LLM proxy",
    ),
    V(
        "LLM_RATE_LIMIT",
        "Requests per instance key (Flask-Limiter syntax).",
        "120 per minute",
        section="LLM proxy",
    ),
    V(
        "LLM_MAX_CONCURRENT",
        "Requests one instance may have open at once in one proxy process; beyond it the proxy "
        "answers 429 with Retry-After.",
        "16",
        "int",
        section="LLM proxy",
    ),
    V(
        "LLM_DEFAULT_MAX_TOKENS",
        "The answer length reserved against the quota (and asked of the upstream) when a request "
        "names no max_tokens.",
        "4096",
        "int",
        section="LLM proxy",
    ),
    V(
        "LLM_REQUEST_MAX_SECONDS",
        "The longest one request may run, its stream included.",
        "600",
        "float",
        section="LLM proxy",
    ),
    V("TRIAL_MODEL", "Model of the homepage trial chat.", "grok-3-mini", section="LLM proxy"),
    V("TRIAL_MESSAGES", "Trial messages per visitor a day.", "5", "int", section="LLM proxy"),
    # -- Backups
    V(
        "BACKUP_S3_ENDPOINT",
        "S3-compatible object storage for customer backups, e.g. https://fsn1.your-objectstorage.com "
        "(Hetzner Object Storage). Unset: no backups (sandbox mode: the sandbox's S3 server).",
        type="url",
        section="Backups",
    ),
    V(
        "BACKUP_S3_BUCKET",
        "The bucket customer backups go to (private).",
        "clawdet-backups",
        section="Backups",
    ),
    V("BACKUP_S3_REGION", "The storage's region name.", "us-east-1", section="Backups"),
    V("BACKUP_S3_ACCESS_KEY_ID", "Access key of the backup bucket.", section="Backups"),
    V("BACKUP_S3_SECRET_ACCESS_KEY", "Its secret key.", secret=True, held_by=WORKERS, section="Backups"),
    V(
        "BACKUP_WINDOW",
        "The nightly backup window in UTC (HH:MM-HH:MM); each instance gets its own minute in it.",
        "01:00-05:00",
        section="Backups",
    ),
    V(
        "BACKUP_FINAL_RETENTION_DAYS",
        "How long a destroyed instance's final backup is kept.",
        "30",
        "int",
        section="Backups",
    ),
)
BY_NAME = {variable.name: variable for variable in VARIABLES}
# Handed to the cloud layer as a mapping (clawdet/cloud.py): only these, and only when set.
CLOUD_VARIABLES = (
    "HCLOUD_TOKEN",
    "HCLOUD_ENDPOINT",
    "HCLOUD_POLL_INTERVAL",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_ZONE_ID",
    "CLOUDFLARE_BASE_URL",
    "HEALTH_URL_TEMPLATE",
)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    project_dir: Path
    database_url: str = field(repr=False)
    secret_key: str = field(repr=False)
    credentials_root: str = field(repr=False)
    gateway_token_root: str = field(repr=False)
    public_url: str
    port: int
    base_domain: str
    free_beta: bool
    free_beta_cap: int
    trusted_proxies: int
    ratelimit_storage_uri: str
    sandbox: bool  # CLAWDET_SANDBOX: fake clouds, only ever when asked for (see sandbox_refusals)
    sandbox_real_gateways: int
    cloud_env: dict[str, str] = field(repr=False)
    hcloud_ssh_keys: str
    operator_ssh_cidrs: str
    control_plane_ssh_cidrs: str
    instance_ssh_port: int
    warm_pool: str
    instance_ssh_private_key: str = field(repr=False)
    paused_page_ipv4: str
    pulumi_backend_url: str
    pulumi_passphrase: str = field(repr=False)
    instance_model: str
    openclaw_image: str
    caddy_image: str
    browser_image: str
    llm_proxy_url: str
    smtp_host: str
    smtp_port: int
    smtp_user: str
    smtp_password: str = field(repr=False)
    smtp_from: str
    smtp_starttls: bool
    smtp_timeout: float
    mail_max_attempts: int
    alert_debounce_minutes: int
    log_format: str
    log_level: str
    metrics_token: str = field(repr=False)
    x_client_id: str
    x_client_secret: str = field(repr=False)
    x_redirect_uri: str
    x_authorize_url: str
    x_api_base_url: str
    llm_primary_url: str
    llm_primary_key: str = field(repr=False)
    llm_fallback_url: str
    llm_fallback_key: str = field(repr=False)
    llm_timeout: float
    llm_rate_limit: str
    llm_max_concurrent: int
    llm_default_max_tokens: int
    llm_request_max_seconds: float
    trial_model: str
    trial_messages: int
    backup_s3_endpoint: str
    backup_s3_bucket: str
    backup_s3_region: str
    backup_s3_access_key_id: str
    backup_s3_secret_access_key: str = field(repr=False)
    backup_window: str
    backup_final_retention_days: int
    generated: frozenset[str] = frozenset()  # secrets made up and kept in this host's data dir
    given: frozenset[str] = frozenset()  # the variables set in the environment (names only)

    def not_for(self, tier: str) -> list[str]:
        """Why `tier` must not start with these settings: a secret it may not hold (a leak of its
        environment must not reach what it does not need), or one it must share and made up."""
        refusals = [
            f"{v.name} is set, a secret this process must not hold"
            for v in VARIABLES
            if v.name in self.given and tier not in v.held_by
        ]
        if self.public_url.startswith("https://"):  # a public site: replicas, fresh containers
            shared = ("SECRET_KEY", "GATEWAY_TOKEN_ROOT") if tier == "web" else ("SECRET_KEY",)
            refusals += [f"{name} is not set" for name in shared if name in self.generated]
        return refusals

    def sandbox_refusals(self) -> list[str]:
        """Why this configuration must not run in sandbox mode: the sandbox's fake servers may
        serve no real customer, and no real credential may be sent to a fake service."""
        if not self.sandbox:
            return []
        refusals = []
        if self.public_url.startswith("https://"):
            refusals.append(f"PUBLIC_URL is {self.public_url}, a public site")
        if not self.is_sqlite and not _on_this_machine(make_url(self.database_url).host):
            refusals.append("DATABASE_URL is a PostgreSQL server on another host")
        refusals += [
            f"{name} is set" for name in ("HCLOUD_TOKEN", "CLOUDFLARE_API_TOKEN") if self.cloud_env.get(name)
        ]
        in_use = {
            "LLM_PRIMARY_URL": self.llm_primary_url if self.llm_primary_key else "",
            "LLM_FALLBACK_URL": self.llm_fallback_url if self.llm_fallback_key else "",
            "X_API_BASE_URL": self.x_api_base_url if self.x_client_id else "",
            "X_AUTHORIZE_URL": self.x_authorize_url if self.x_client_id else "",
            "SMTP_HOST": f"smtp://{self.smtp_host}" if self.smtp_host else "",
        }
        refusals += [
            f"{name} is {url}, a real service"
            for name, url in in_use.items()
            if url and not _on_this_machine(urlsplit(url).hostname)
        ]
        return refusals

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def session_cookie_name(self) -> str:
        # __Host-: only this exact host, over https, may set or read it; no customer's subdomain.
        return "__Host-clawdet_session" if self.secure_cookies else "clawdet_session"

    def secret_values(self) -> list[str]:
        """The values of every variable declared secret (for the log redactor)."""
        found = [str(getattr(self, v.name.lower(), "") or "") for v in VARIABLES if v.secret]
        found += [self.cloud_env.get(name, "") for name in CLOUD_VARIABLES if BY_NAME[name].secret]
        found.append(self.pulumi_passphrase)
        return [value.strip() for value in found if value.strip()]

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, dotenv: bool = True, **overrides: str
    ) -> Settings:
        """From `env` (default: the process environment after loading `.env`); `overrides` win,
        e.g. `PORT="9123"` for a `--port` given on the command line."""
        if env is None:
            if dotenv:
                load_dotenv(REPO_ROOT / ".env", override=False)
            env = dict(os.environ)
        env = {**env, **overrides}

        def read(name: str) -> Any:
            variable = BY_NAME[name]
            raw = env.get(name) or ""
            raw = raw if raw.strip() else variable.default  # set but blank counts as unset
            if not raw:
                return "" if variable.type in ("str", "url", "duration") else None
            try:
                return variable.parse(raw)
            except ValueError as exc:
                raise UserFacingError(
                    "bad_setting",
                    f"{name} is {raw!r}, which is not a valid {variable.type}: {exc}.",
                    f"Set {name} as .env.example describes it, or unset it for the default.",
                    status=503,
                ) from exc

        values = {v.name.lower(): read(v.name) for v in VARIABLES if v.name not in CLOUD_VARIABLES}
        data_dir = Path(values.pop("clawdet_data_dir") or REPO_ROOT / ".data").resolve()
        public_url = values["public_url"] = values["public_url"] or f"http://127.0.0.1:{values['port']}"
        cloud_env = {name: read(name) for name in CLOUD_VARIABLES if read(name)}
        database_url = normalise_database_url(
            values["database_url"] or f"sqlite:///{data_dir / 'clawdet.db'}"
        )
        values.update(
            data_dir=data_dir,
            project_dir=Path(values.pop("clawdet_project_dir") or REPO_ROOT).resolve(),
            database_url=database_url,
            secret_key=values["secret_key"] or _installation_secret(data_dir, "secret_key"),
            credentials_root=values["credentials_root"] or _installation_secret(data_dir, "credentials_root"),
            gateway_token_root=values["gateway_token_root"]
            or _installation_secret(data_dir, "gateway_token_root"),
            sandbox=bool(values.pop("clawdet_sandbox")),
            cloud_env=cloud_env,
            pulumi_backend_url=values["pulumi_backend_url"] or state_backend_for(database_url, data_dir),
            pulumi_passphrase=values.pop("pulumi_config_passphrase")
            or _installation_secret(data_dir, "pulumi_passphrase"),
            given=frozenset(v.name for v in VARIABLES if (env.get(v.name) or "").strip()),
            generated=frozenset(
                name
                for name, given in (
                    ("SECRET_KEY", values["secret_key"]),
                    ("CREDENTIALS_ROOT", values["credentials_root"]),
                    ("GATEWAY_TOKEN_ROOT", values["gateway_token_root"]),
                    ("PULUMI_CONFIG_PASSPHRASE", env.get("PULUMI_CONFIG_PASSPHRASE", "").strip()),
                    ("INSTANCE_SSH_PRIVATE_KEY", values["instance_ssh_private_key"]),
                )
                if not given
            ),
            instance_ssh_private_key=(
                values["instance_ssh_private_key"].replace("\\n", "\n")
                or _installation_secret(data_dir, "instance_ssh_key", ssh_keys.generate)
            ).strip()
            + "\n",
            llm_proxy_url=values["llm_proxy_url"] or f"{public_url}/llm/v1",
            smtp_from=values["smtp_from"] or f"Clawdet <noreply@{values['base_domain']}>",
            log_format=values["log_format"].lower(),
            log_level=values["log_level"].upper(),
        )
        return cls(**values)


def env_example() -> str:
    """`.env.example`, written from the declaration."""
    lines = [
        "# Every setting Clawdet reads, generated from clawdet/settings.py (python -m clawdet.settings).",
        "# Copy to .env (never committed) and change what you need; with nothing set, `make run` uses",
        "# SQLite, a local Pulumi state backend and the sandbox cloud. (secret): never commit or log it.",
        "# (workers only): give it to `clawdet worker` alone (compose: worker.env); (web app and",
        "# workers only): to `clawdet web` and the workers (compose: web.env). The others refuse to start",
        "# with it.",
    ]
    section = None
    for variable in VARIABLES:
        if variable.section != section:
            section = variable.section
            lines += ["", f"# --- {section} " + "-" * max(3, 92 - len(section))]
        holders = {WORKERS: " (workers only)", WEB_AND_WORKERS: " (web app and workers only)"}
        marks = " (secret)" * variable.secret + holders.get(variable.held_by, "")
        lines.append(f"# {variable.doc}{marks} [{variable.type}]")
        value = variable.example if variable.example is not None else variable.default
        lines.append(f"{variable.name}={value}")
    return "\n".join(lines) + "\n"


STATE_TABLE = "pulumi_state"


def state_backend_for(database_url: str, data_dir: Path) -> str:
    """The default Pulumi state backend: beside the platform's own data. With PostgreSQL, a table
    of the same database (Pulumi's DIY postgres backend), which every worker host reaches; with
    SQLite, or while earlier operations' state is still in the data directory, a folder there."""
    folder = data_dir / "pulumi-state"
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql" or holds_state(folder):
        return f"file://{folder}"
    query = dict(url.query)
    if query.get("sslmode") not in ("disable", "require", "verify-ca", "verify-full"):  # lib/pq's only
        query["sslmode"] = "disable" if _on_this_machine(url.host) else "require"
    backend = url.set(drivername="postgres", query={**query, "table": STATE_TABLE})
    return backend.render_as_string(hide_password=False)


def holds_state(folder: Path) -> bool:
    """Whether a file:// backend folder holds any stack's state."""
    stacks = folder / ".pulumi" / "stacks"
    return stacks.is_dir() and any(path.is_file() for path in stacks.rglob("*"))


def _on_this_machine(host: str | None) -> bool:
    """A loopback address, `localhost`, or no host at all (a Unix socket)."""
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_database_url(url: str) -> str:
    """Accept the usual `postgres://` spellings and always use psycopg 3."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _installation_secret(data_dir: Path, name: str, make: Callable[[], str] | None = None) -> str:
    """A per-installation random secret kept in the data directory, so `make run` needs no
    set-up and sessions and stacks survive restarts. Production sets the variable."""
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = make() if make else secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this installation won the race
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


if __name__ == "__main__":
    print(env_example(), end="")
