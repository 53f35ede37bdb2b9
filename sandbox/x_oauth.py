"""X (Twitter) OAuth 2.0 stand-in: authorize page, token endpoint with PKCE, /2/users/me.

The client is confidential (HTTP Basic with client id and secret on the token endpoint), as
X requires for web apps. Who approves is chosen on the page (pick a user or type a new
username) or from Python with ``auto_approve(username)``; tests may also add
``sandbox_auto=approve&sandbox_user=NAME`` to the authorize URL. Refusals use X's shapes:
``{"error", "error_description"}`` on the token endpoint, RFC 7807 problems on the API.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import secrets
import struct
import time
import urllib.parse
import zlib
from typing import Any

from aiohttp import web

from .faults import FaultInjector
from .http_common import RequestJournal, fault_and_journal_middleware, json_response
from .state import StateStore

SUPPORTED_SCOPES = {
    "tweet.read",
    "tweet.write",
    "users.read",
    "follows.read",
    "offline.access",
    "like.read",
    "list.read",
    "bookmark.read",
    "users.email",
}
USER_FIELDS = {"profile_image_url", "created_at", "description", "verified", "protected", "location", "url"}
DEFAULT_USERS = (("sandbox_alice", "Alice Sandbox"), ("sandbox_bob", "Bob Sandbox"))


def _user_id(username: str) -> str:
    digest = int(hashlib.sha256(username.lower().encode()).hexdigest(), 16)
    return str(1_000_000_000_000_000_000 + digest % 900_000_000_000_000_000)


def _avatar_png(seed: str, size: int = 48) -> bytes:
    red, green, blue = hashlib.sha256(seed.encode()).digest()[:3]
    row = b"\x00" + bytes([red, green, blue]) * size
    raw = row * size

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _token_error(description: str, error: str = "invalid_request", status: int = 400) -> web.Response:
    return json_response({"error": error, "error_description": description}, status=status)


def _problem(status: int, title: str, detail: str) -> web.Response:
    return json_response(
        {"title": title, "type": "about:blank", "status": status, "detail": detail}, status=status
    )


class XOAuth:
    def __init__(
        self,
        store: StateStore,
        faults: FaultInjector,
        journal: RequestJournal,
        *,
        client_id: str,
        client_secret: str,
        code_ttl: float = 30.0,
        token_ttl: int = 7200,
    ) -> None:
        self.store = store
        self.faults = faults
        self.journal = journal
        self.client_id = client_id
        self.client_secret = client_secret
        self.code_ttl = code_ttl
        self.token_ttl = token_ttl
        self.base_url = ""
        self.users: list[dict[str, Any]] = store.data["x_users"]
        self.allowed_redirect_uris: list[str] | None = None
        self.auto_approve_username: str | None = None
        self._codes: dict[str, dict[str, Any]] = {}
        self._access_tokens: dict[str, dict[str, Any]] = {}
        self._refresh_tokens: dict[str, dict[str, Any]] = {}
        if not self.users:
            for username, name in DEFAULT_USERS:
                self.add_user(username, name)

    # -- users ----------------------------------------------------------------------------
    def add_user(self, username: str, name: str | None = None, user_id: str | None = None) -> dict[str, Any]:
        existing = self.find_user(username)
        if existing is not None:
            return existing
        if not username or not all(c.isalnum() or c == "_" for c in username) or len(username) > 15:
            raise ValueError("X usernames are 1-15 letters, digits or underscores")
        user = {"id": user_id or _user_id(username), "username": username, "name": name or username}
        self.users.append(user)
        self.store.mark_dirty()
        return user

    def find_user(self, username: str) -> dict[str, Any] | None:
        return next((u for u in self.users if u["username"].lower() == username.lower()), None)

    def auto_approve(self, username: str | None) -> None:
        """Every authorize request is approved at once by ``username`` (None: show the page)."""
        if username is not None:
            self.add_user(username)
        self.auto_approve_username = username

    def _public_user(self, user: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        data = {"id": user["id"], "name": user["name"], "username": user["username"]}
        if "profile_image_url" in fields:
            data["profile_image_url"] = f"{self.base_url}/profile_images/{user['id']}/avatar_normal.png"
        if "created_at" in fields:
            data["created_at"] = "2020-01-01T00:00:00.000Z"
        if "description" in fields:
            data["description"] = ""
        if "verified" in fields:
            data["verified"] = False
        if "protected" in fields:
            data["protected"] = False
        return data

    # -- application ----------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[fault_and_journal_middleware("x", self.faults, self.journal, self._fault_response)]
        )
        app.router.add_get("/i/oauth2/authorize", self.authorize_page)
        app.router.add_post("/i/oauth2/authorize", self.authorize_decision)
        app.router.add_post("/2/oauth2/token", self.token)
        app.router.add_post("/2/oauth2/revoke", self.revoke)
        app.router.add_get("/2/users/me", self.users_me)
        app.router.add_get("/profile_images/{user_id}/avatar_normal.png", self.avatar)
        return app

    @staticmethod
    def _fault_response(status: int, retry_after: float | None) -> web.Response:
        headers = {"Retry-After": str(int(retry_after))} if retry_after else None
        if status == 429:
            headers = dict(
                headers or {},
                **{
                    "x-rate-limit-remaining": "0",
                    "x-rate-limit-reset": str(int(time.time() + (retry_after or 1))),
                },
            )
            return json_response(
                {
                    "title": "Too Many Requests",
                    "detail": "Too Many Requests",
                    "type": "about:blank",
                    "status": 429,
                },
                status=429,
                headers=headers,
            )
        return json_response(
            {
                "title": "Service Unavailable",
                "detail": f"injected fault ({status})",
                "type": "about:blank",
                "status": status,
            },
            status=status,
            headers=headers,
        )

    # -- authorize --------------------------------------------------------------------------
    def _authorize_problem(self, params: Any) -> str | None:
        if params.get("response_type") != "code":
            return "response_type must be code"
        if params.get("client_id") != self.client_id:
            return "unknown client_id"
        redirect_uri = params.get("redirect_uri") or ""
        parsed = urllib.parse.urlsplit(redirect_uri)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            return "redirect_uri is missing or not an absolute http(s) URL"
        if self.allowed_redirect_uris is not None and redirect_uri not in self.allowed_redirect_uris:
            return "redirect_uri is not registered for this app"
        if not params.get("state"):
            return "state is required"
        scopes = set((params.get("scope") or "").split())
        if not scopes or not scopes <= SUPPORTED_SCOPES:
            return "scope is missing or has unknown scopes"
        if not params.get("code_challenge"):
            return "code_challenge is required"
        if params.get("code_challenge_method", "plain") not in ("S256", "plain"):
            return "code_challenge_method must be S256 or plain"
        return None

    @staticmethod
    def _error_page(message: str) -> web.Response:
        page = (
            f"<!doctype html><html><head><title>X / Error</title></head><body>"
            f"<h1>Something went wrong</h1><p>You weren't able to give access to the App. "
            f'Go back and try logging in again.</p><p id="reason">{html.escape(message)}</p></body></html>'
        )
        return web.Response(text=page, status=400, content_type="text/html")

    async def authorize_page(self, request: web.Request) -> web.StreamResponse:
        params = request.query
        problem = self._authorize_problem(params)
        if problem:
            return self._error_page(problem)
        auto_user = self.auto_approve_username
        if params.get("sandbox_auto") == "approve":
            auto_user = params.get("sandbox_user") or (self.users[0]["username"] if self.users else None)
        if params.get("sandbox_auto") == "deny":
            return self._deny(params)
        if auto_user:
            return self._approve(params, auto_user)
        return web.Response(text=self._page(params), content_type="text/html")

    def _page(self, params: Any) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(value)}">'
            for key, value in params.items()
            if not key.startswith("sandbox_")
        )
        options = "".join(
            f'<option value="{html.escape(u["username"])}">@{html.escape(u["username"])} '
            f"({html.escape(u['name'])})</option>"
            for u in self.users
        )
        scopes = "".join(f"<li>{html.escape(scope)}</li>" for scope in params.get("scope", "").split())
        return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Authorize app / X (sandbox)</title></head>
<body>
<h1>Clawdet wants to access your X account</h1>
<p>It will be able to:</p><ul id="scopes">{scopes}</ul>
<form method="post" action="/i/oauth2/authorize">
{hidden}
<label for="username">Sign in as</label>
<select id="username" name="username">{options}</select>
<label for="new_username">or another username</label>
<input id="new_username" name="new_username" placeholder="new_user" pattern="[A-Za-z0-9_]{{1,15}}">
<button type="submit" name="decision" value="approve" id="approve">Authorize app</button>
<button type="submit" name="decision" value="deny" id="deny">Cancel</button>
</form>
</body></html>"""

    async def authorize_decision(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        problem = self._authorize_problem(form)
        if problem:
            return self._error_page(problem)
        if form.get("decision") != "approve":
            return self._deny(form)
        username = (form.get("new_username") or "").strip() or form.get("username") or ""
        try:
            self.add_user(str(username))
        except ValueError as exc:
            return self._error_page(str(exc))
        return self._approve(form, str(username))

    @staticmethod
    def _redirect(redirect_uri: str, params: dict[str, str]) -> web.Response:
        separator = "&" if urllib.parse.urlsplit(redirect_uri).query else "?"
        raise web.HTTPFound(redirect_uri + separator + urllib.parse.urlencode(params))

    def _deny(self, params: Any) -> web.Response:
        return self._redirect(params["redirect_uri"], {"error": "access_denied", "state": params["state"]})

    def _approve(self, params: Any, username: str) -> web.Response:
        user = self.add_user(username)
        code = secrets.token_urlsafe(48)
        self._codes[code] = {
            "user_id": user["id"],
            "redirect_uri": params["redirect_uri"],
            "challenge": params["code_challenge"],
            "method": params.get("code_challenge_method", "plain"),
            "scope": params["scope"],
            "expires": time.monotonic() + self.code_ttl,
            "used": False,
            "tokens": [],
        }
        return self._redirect(params["redirect_uri"], {"state": params["state"], "code": code})

    # -- token ------------------------------------------------------------------------------
    def _client_authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, _, client_secret = decoded.partition(":")
        client_id = urllib.parse.unquote_plus(client_id)
        client_secret = urllib.parse.unquote_plus(client_secret)
        return client_id == self.client_id and hmac.compare_digest(client_secret, self.client_secret)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not self._client_authenticated(request):
            return _token_error("Missing valid authorization header", "unauthorized_client", 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            return self._refresh(form)
        return _token_error("Value passed for the grant type was invalid.", "unsupported_grant_type")

    def _exchange_code(self, form: Any) -> web.Response:
        code = form.get("code")
        if not code:
            return _token_error("Missing required parameter [code].")
        if not form.get("redirect_uri"):
            return _token_error("Missing required parameter [redirect_uri].")
        verifier = form.get("code_verifier")
        if not verifier:
            return _token_error("Missing required parameter [code_verifier].")
        grant = self._codes.get(str(code))
        if grant is None or grant["expires"] < time.monotonic():
            return _token_error("Value passed for the authorization code was invalid.")
        if grant["used"]:
            for token in grant["tokens"]:  # a replayed code revokes what it issued (RFC 6749 4.1.2)
                self._access_tokens.pop(token, None)
                self._refresh_tokens.pop(token, None)
            return _token_error("Value passed for the authorization code was invalid.")
        if form["redirect_uri"] != grant["redirect_uri"]:
            return _token_error(
                "Value passed for the redirect uri did not match the uri of the authorization code."
            )
        if grant["method"] == "S256":
            computed = (
                base64.urlsafe_b64encode(hashlib.sha256(str(verifier).encode()).digest())
                .rstrip(b"=")
                .decode()
            )
        else:
            computed = str(verifier)
        if not hmac.compare_digest(computed, grant["challenge"]):
            return _token_error("Value passed for the code verifier did not match the code challenge.")
        grant["used"] = True
        return self._issue(grant["user_id"], grant["scope"], grant["tokens"])

    def _refresh(self, form: Any) -> web.Response:
        refresh_token = form.get("refresh_token")
        grant = self._refresh_tokens.pop(str(refresh_token), None) if refresh_token else None
        if grant is None:
            return _token_error("Value passed for the token was invalid.")
        return self._issue(grant["user_id"], grant["scope"], [])

    def _issue(self, user_id: str, scope: str, issued: list[str]) -> web.Response:
        access_token = secrets.token_urlsafe(64)
        self._access_tokens[access_token] = {
            "user_id": user_id,
            "scope": scope,
            "expires": time.monotonic() + self.token_ttl,
        }
        issued.append(access_token)
        body = {
            "token_type": "bearer",
            "expires_in": self.token_ttl,
            "access_token": access_token,
            "scope": scope,
        }
        if "offline.access" in scope.split():
            refresh_token = secrets.token_urlsafe(64)
            self._refresh_tokens[refresh_token] = {"user_id": user_id, "scope": scope}
            issued.append(refresh_token)
            body["refresh_token"] = refresh_token
        return json_response(body)

    async def revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not self._client_authenticated(request):
            return _token_error("Missing valid authorization header", "unauthorized_client", 401)
        token = str(form.get("token") or "")
        revoked = self._access_tokens.pop(token, None) or self._refresh_tokens.pop(token, None)
        return json_response({"revoked": revoked is not None})

    # -- API --------------------------------------------------------------------------------
    async def users_me(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        grant = self._access_tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None or grant["expires"] < time.monotonic():
            return _problem(401, "Unauthorized", "Unauthorized")
        if "users.read" not in grant["scope"].split():
            return json_response(
                {
                    "title": "Forbidden",
                    "type": "about:blank",
                    "status": 403,
                    "detail": "Missing required scope users.read",
                },
                status=403,
            )
        user = next((u for u in self.users if u["id"] == grant["user_id"]), None)
        if user is None:
            return _problem(401, "Unauthorized", "Unauthorized")
        requested = set(filter(None, request.query.get("user.fields", "").split(",")))
        unknown = requested - USER_FIELDS
        if unknown:
            message = (
                f"The `user.fields` query parameter value [{sorted(unknown)[0]}] is not one of "
                f"{sorted(USER_FIELDS)}"
            )
            return json_response(
                {
                    "errors": [{"parameters": {"user.fields": sorted(unknown)}, "message": message}],
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": "https://api.twitter.com/2/problems/invalid-request",
                },
                status=400,
            )
        return json_response({"data": self._public_user(user, requested)})

    async def avatar(self, request: web.Request) -> web.Response:
        return web.Response(body=_avatar_png(request.match_info["user_id"]), content_type="image/png")

    def inventory(self) -> dict[str, Any]:
        return {"users": [dict(u) for u in self.users], "active_access_tokens": len(self._access_tokens)}
