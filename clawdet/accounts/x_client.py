"""Talking to X: the authorize URL (PKCE S256), the code exchange (HTTP Basic client auth) and
`/2/users/me`, with timeouts and bounded retries. Nothing here logs a token or a secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass

import httpx
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from clawdet.settings import Settings

log = logging.getLogger(__name__)

SCOPES = "users.read tweet.read"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
ATTEMPTS = 3
BACKOFF = 0.3  # seconds, doubled per attempt


class XUnavailable(Exception):
    """X did not answer usefully after the retries."""


class XRefused(Exception):
    """X refused the code (invalid, reused or expired) or the token."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class XProfile:
    id: str
    username: str
    name: str
    profile_image_url: str | None


def configured(settings: Settings) -> bool:
    return bool(settings.x_client_id and settings.x_client_secret)


def redirect_uri(settings: Settings) -> str:
    return settings.x_redirect_uri or f"{settings.public_url}/api/auth/x/callback"


def new_state() -> str:
    return secrets.token_urlsafe(32)


def code_verifier(settings: Settings, state: str) -> str:
    """Derived from the state with the app secret, so the cookie never has to carry it."""
    digest = hmac.new(settings.secret_key.encode(), f"x-pkce/{state}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _client(settings: Settings) -> OAuth2Client:
    return OAuth2Client(
        settings.x_client_id,
        settings.x_client_secret,
        token_endpoint_auth_method="client_secret_basic",
        scope=SCOPES,
        redirect_uri=redirect_uri(settings),
        code_challenge_method="S256",
        timeout=TIMEOUT,
    )


def authorize_url(settings: Settings, state: str) -> str:
    with _client(settings) as client:
        url, _ = client.create_authorization_url(
            settings.x_authorize_url, state=state, code_verifier=code_verifier(settings, state)
        )
    return url


def _pause(attempt: int) -> None:
    time.sleep(BACKOFF * 2**attempt)


def exchange_code(settings: Settings, code: str, state: str) -> XProfile:
    token_url = f"{settings.x_api_base_url}/2/oauth2/token"
    with _client(settings) as client:
        for attempt in range(ATTEMPTS):
            try:
                client.fetch_token(
                    token_url,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier(settings, state),
                )
                break
            except OAuthError as exc:
                log.info("x token exchange refused: %s", exc.error)
                raise XRefused(exc.error or "invalid_grant") from None
            # A code is single-use: only retry when the request cannot have reached X.
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                log.warning("x token exchange attempt %d: %s", attempt + 1, type(exc).__name__)
                if attempt + 1 == ATTEMPTS:
                    raise XUnavailable("token endpoint unreachable") from None
                _pause(attempt)
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("x token exchange failed: %s", type(exc).__name__)
                raise XUnavailable("token exchange failed") from None
        return _users_me(client, settings)


def _users_me(client: OAuth2Client, settings: Settings) -> XProfile:
    url = f"{settings.x_api_base_url}/2/users/me"
    for attempt in range(ATTEMPTS):
        try:
            response = client.get(url, params={"user.fields": "profile_image_url"})
        except httpx.TransportError as exc:
            log.warning("x users/me attempt %d: %s", attempt + 1, type(exc).__name__)
        else:
            if response.status_code == 200:
                data = response.json().get("data") or {}
                if not data.get("id") or not data.get("username"):
                    raise XUnavailable("users/me answered without an id")
                return XProfile(
                    str(data["id"]),
                    str(data["username"])[:64],
                    str(data.get("name") or data["username"])[:100],
                    (data.get("profile_image_url") or None),
                )
            log.warning("x users/me attempt %d: HTTP %d", attempt + 1, response.status_code)
            if response.status_code in (401, 403):
                raise XRefused("token_rejected")
        if attempt + 1 < ATTEMPTS:
            _pause(attempt)
    raise XUnavailable("users/me failed")
