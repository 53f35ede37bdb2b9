"""Structured logs for every process (web, worker, CLI): one JSON object per line, the request
id of the operation, and secrets masked here, at the logger, rather than by each caller.

`configure(settings)` routes both structlog and the standard `logging` calls through the same
processors, so `log.info("instance %s is ready", name)` in any module comes out as JSON too.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from structlog.contextvars import bind_contextvars, get_contextvars, reset_contextvars

MASK = "[REDACTED]"

# Keys whose values are secret wherever they appear in an event.
SECRET_KEY_PATTERN = re.compile(
    r"pass(word|wd|phrase)?|token|secret|(^|_)key$|api_?key|authorization|cookie|credential", re.IGNORECASE
)

# Secret-looking substrings inside messages, and what replaces them.
SECRET_VALUE_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    (
        re.compile(
            r"(?i)((?:password|passwd|passphrase|token|secret|api[_-]?key|authorization)"
            r"[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&]+"
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"(://[^:/@\s]+):[^@/\s]+@"), r"\1:" + MASK + "@"),  # user:password@ in URLs
    (re.compile(r"\bclk_[A-Za-z0-9_-]{16,}"), MASK),  # per-instance LLM proxy keys
    (re.compile(r"\b(?:sk|xai|sbx)-[A-Za-z0-9_-]{16,}"), MASK),  # upstream LLM keys
    (re.compile(r"\b[0-9a-f]{64}\b"), MASK),  # gateway tokens, hex digests
)

_known_secrets: set[str] = set()


def register_secret(*values: str | None) -> None:
    """Values that must never appear in a log line, whatever their shape (configured keys)."""
    for value in values:
        if value and len(value) >= 6:
            _known_secrets.add(value)


def redact_text(text: str) -> str:
    for value in sorted(_known_secrets, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in SECRET_VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {
            k: (MASK if isinstance(k, str) and SECRET_KEY_PATTERN.search(k) and v else _redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_redact(v, depth + 1) for v in value]
    return value


SAFE_KEYS = {"event", "level", "logger", "timestamp", "request_id"}


def redact_secrets(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """The structlog processor: masks secret keys and secret-looking text, including the
    rendered traceback of an exception."""
    for key, value in list(event.items()):
        if key in SAFE_KEYS and key != "event":
            continue
        if key not in SAFE_KEYS and SECRET_KEY_PATTERN.search(key) and value:
            event[key] = MASK
        else:
            event[key] = _redact(value)
    return event


def _secrets_of(settings: Any) -> list[str]:
    return settings.secret_values() if hasattr(settings, "secret_values") else []


def shared_processors() -> list:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]


def configure(
    settings: Any = None, *, stream: TextIO | None = None, level: str | None = None, fmt: str | None = None
) -> None:
    """Call once at process start (web, worker, CLI). Idempotent: replaces the root handler."""
    if settings is not None:
        register_secret(*_secrets_of(settings))
    level = (level or getattr(settings, "log_level", "INFO") or "INFO").upper()
    fmt = fmt or getattr(settings, "log_format", "json") or "json"
    renderer = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact_secrets, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("clawdet")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "clawdet"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("waitress.queue", "urllib3", "httpx", "httpcore", "mail.log"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[*shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


# -- request ids ----------------------------------------------------------------------------

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def new_request_id() -> str:
    return secrets.token_hex(8)


def clean_request_id(raw: str | None) -> str:
    """An incoming X-Request-ID if it is a sane token, else a fresh one (never log-injected)."""
    return raw if raw and REQUEST_ID_PATTERN.match(raw) else new_request_id()


def current_request_id() -> str | None:
    return get_contextvars().get("request_id")


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Bind values (request_id, instance, ...) to every log line of this thread or task."""
    tokens = bind_contextvars(**values)
    try:
        yield
    finally:
        reset_contextvars(**tokens)
