"""Response headers, the `next` redirect check, and who may see operational details."""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from flask import Flask, Response, request

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: https://pbs.twimg.com",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "object-src 'none'",
    ]
)


def install_headers(app: Flask) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.is_secure or app.config.get("SESSION_COOKIE_SECURE"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response


def safe_next(target: str | None, default: str) -> str:
    """Only a path on this site: no scheme, no host, no `//` or backslash tricks."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return default
    return target


def from_this_machine() -> bool:
    """A direct loopback peer: not forwarded by a proxy (whose own peer is loopback too)."""
    forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    try:
        return not forwarded and ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def has_metrics_token(token: str) -> bool:
    presented = request.headers.get("Authorization", "").encode()
    return bool(token) and hmac.compare_digest(presented, f"Bearer {token}".encode())


def operator_view(metrics_token: str, is_admin: bool) -> bool:
    """Operational details (what is down and why, metrics) are for admins, the metrics token's
    holder, and, while no token is set, this machine."""
    return is_admin or has_metrics_token(metrics_token) or (not metrics_token and from_this_machine())
