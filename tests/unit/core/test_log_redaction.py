"""Structured logs: JSON lines with the request id, secrets masked at the logger."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from clawdet import logs
from clawdet.settings import Settings


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "clawdet"]:
        root.removeHandler(handler)


def capture(settings=None) -> io.StringIO:
    stream = io.StringIO()
    logs.configure(settings, stream=stream, level="INFO", fmt="json")
    return stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_stdlib_and_structlog_lines_are_json_with_the_request_id():
    stream = capture()
    with logs.bound(request_id="req-123", instance="alice"):
        logging.getLogger("clawdet.reconciler.reconciler").info("instance %s is ready", "alice")
        structlog.get_logger("webapp").info("signed in", user="user_1")
    logging.getLogger("x").info("after")
    first, second, third = lines(stream)
    assert first["event"] == "instance alice is ready" and first["request_id"] == "req-123"
    assert (
        first["logger"] == "clawdet.reconciler.reconciler"
        and first["level"] == "info"
        and first["instance"] == "alice"
    )
    assert second["user"] == "user_1" and second["request_id"] == "req-123"
    assert "request_id" not in third


def test_secrets_are_masked_by_key_by_pattern_and_by_known_value():
    settings = Settings.from_env(
        {
            "SECRET_KEY": "platform-secret-value-123",
            "DATABASE_URL": "sqlite://",
            "CLAWDET_DATA_DIR": "/tmp/clawdet-logs-test",
            "LLM_PRIMARY_KEY": "upstream-key-of-the-platform",
            "SMTP_PASSWORD": "smtp-pass-word",
        },
        dotenv=False,
    )
    stream = capture(settings)
    log = logging.getLogger("t")
    gateway_token = "ab" * 32
    log.info("config %s and %s and %s", settings.secret_key, settings.llm_primary_key, settings.smtp_password)
    log.warning("calling with Authorization: Bearer abcdefghijklmnop and token=%s", gateway_token)
    log.info("db postgresql://clawdet:dbpass123@db:5432/clawdet key clk_ABCDEFGHIJKLMNOPQRSTUVWX")
    structlog.get_logger("t").info(
        "login", password="hunter22", api_key="k-123456", headers={"Authorization": "x"}, count=3
    )
    try:
        raise RuntimeError(f"upstream refused password={settings.smtp_password}")
    except RuntimeError:
        log.exception("failed")
    text = stream.getvalue()
    for secret in (
        "platform-secret-value-123",
        "upstream-key-of-the-platform",
        "smtp-pass-word",
        gateway_token,
        "abcdefghijklmnop",
        "dbpass123",
        "clk_ABCDEFGHIJKLMNOPQRSTUVWX",
        "hunter22",
        "k-123456",
    ):
        assert secret not in text, secret
    login = next(line for line in lines(stream) if line["event"] == "login")
    assert (
        login["password"] == logs.MASK
        and login["headers"] == {"Authorization": logs.MASK}
        and login["count"] == 3
    )
    assert "postgresql://clawdet:[REDACTED]@db:5432/clawdet" in text


def test_request_ids_are_sane_tokens():
    assert logs.clean_request_id("abc-123") == "abc-123"
    injected = logs.clean_request_id('x"\n{"event": "forged"}')
    assert injected != 'x"\n{"event": "forged"}' and len(injected) == 16
    assert logs.clean_request_id(None) != logs.clean_request_id(None)
