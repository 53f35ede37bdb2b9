"""Cloudflare API v4 stand-in: token verify, zones, DNS records.

Envelope ``{success, errors, messages, result}`` (+ ``result_info`` on lists), Cloudflare's
numeric error codes, and its record rules: names are stored as lower-case FQDNs inside the
zone, proxied records have TTL 1 (automatic), an identical record is refused (81058) and a
CNAME cannot share its name with other records (81053).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .clock import Clock
from .faults import FaultInjector
from .http_common import RequestJournal, fault_and_journal_middleware, json_response
from .state import StateStore, cloudflare_time

log = logging.getLogger(__name__)

RECORD_TYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "NS", "SRV", "CAA", "PTR", "HTTPS", "SVCB")
PROXIABLE_TYPES = ("A", "AAAA", "CNAME")
_ID = re.compile(r"^[0-9a-f]{32}$")
_LABEL = re.compile(r"^(\*|[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)$")
_ORDER_FIELDS = ("type", "name", "content", "ttl", "proxied")


class CloudflareError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        return envelope_error(self.status, [(self.code, self.message)], headers)


def envelope_error(
    status: int, errors: list[tuple[int, str]], headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "success": False,
        "errors": [{"code": code, "message": message} for code, message in errors],
        "messages": [],
        "result": None,
    }
    return json_response(body, status=status, headers=headers)


def envelope(
    result: Any,
    status: int = 200,
    result_info: dict[str, Any] | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": messages or [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return json_response(body, status=status)


def record_not_found() -> CloudflareError:
    return CloudflareError(404, 81044, "Record does not exist.")


def _stable_id(*parts: object) -> str:
    return hashlib.md5(":".join(str(p) for p in parts).encode()).hexdigest()


class Cloudflare:
    def __init__(
        self,
        store: StateStore,
        faults: FaultInjector,
        journal: RequestJournal,
        *,
        token: str,
        zone_name: str,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or Clock()
        self._changed_at: dict[str, float] = {}  # record id -> when its content last changed
        self.store = store
        self.faults = faults
        self.journal = journal
        self.token = token
        self.zones: dict[str, dict[str, Any]] = store.section("zones")
        self.records: dict[str, dict[str, Any]] = store.section("dns_records")
        self.token_id = _stable_id("token", token)
        self.account_id = _stable_id("account", zone_name)
        self.zone_id = self.ensure_zone(zone_name)

    def ensure_zone(self, name: str) -> str:
        zone_id = _stable_id("zone", name)
        if zone_id not in self.zones:
            now = cloudflare_time()
            self.zones[zone_id] = {
                "id": zone_id,
                "name": name,
                "status": "active",
                "paused": False,
                "type": "full",
                "development_mode": 0,
                "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                "original_name_servers": None,
                "original_registrar": None,
                "original_dnshost": None,
                "created_on": now,
                "modified_on": now,
                "activated_on": now,
                "meta": {
                    "step": 4,
                    "custom_certificate_quota": 0,
                    "page_rule_quota": 3,
                    "phishing_detected": False,
                },
                "owner": {"id": None, "type": "user", "email": None},
                "account": {"id": self.account_id, "name": "Clawdet sandbox account"},
                "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
                "plan": {
                    "id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
                    "name": "Free Website",
                    "price": 0,
                    "currency": "USD",
                    "frequency": "",
                    "is_subscribed": False,
                    "can_subscribe": False,
                    "legacy_id": "free",
                    "legacy_discount": False,
                    "externally_managed": False,
                },
            }
            self.store.mark_dirty()
        return zone_id

    # -- application --------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                fault_and_journal_middleware("cloudflare", self.faults, self.journal, self._fault_response),
                self._api_middleware,
            ]
        )
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", "/user/tokens/verify", self.verify_token),
            ("GET", "/zones", self.list_zones),
            ("GET", "/zones/{zone_id}", self.get_zone),
            ("GET", "/zones/{zone_id}/dns_records", self.list_records),
            ("POST", "/zones/{zone_id}/dns_records", self.create_record),
            ("GET", "/zones/{zone_id}/dns_records/{record_id}", self.get_record),
            ("PUT", "/zones/{zone_id}/dns_records/{record_id}", self.overwrite_record),
            ("PATCH", "/zones/{zone_id}/dns_records/{record_id}", self.patch_record),
            ("DELETE", "/zones/{zone_id}/dns_records/{record_id}", self.delete_record),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, "/client/v4" + path, handler)
        return app

    @staticmethod
    def _fault_response(status: int, retry_after: float | None) -> web.Response:
        headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after else None
        if status == 429:
            return envelope_error(
                429, [(971, "Please wait and consider throttling your request speed")], headers
            )
        return envelope_error(
            status, [(10000 if status < 500 else 10001, f"injected fault ({status})")], headers
        )

    @web.middleware
    async def _api_middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        if header is None:
            if request.headers.get("X-Auth-Key") or request.headers.get("X-Auth-Email"):
                return envelope_error(403, [(9103, "Unknown X-Auth-Key or X-Auth-Email")])
            return envelope_error(400, [(9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")])
        scheme, _, presented = header.partition(" ")
        presented = presented.strip()
        if scheme != "Bearer" or not re.fullmatch(r"[A-Za-z0-9_-]{40}", presented):
            return json_response(
                {
                    "success": False,
                    "errors": [
                        {
                            "code": 6003,
                            "message": "Invalid request headers",
                            "error_chain": [
                                {"code": 6111, "message": "Invalid format for Authorization header"}
                            ],
                        }
                    ],
                    "messages": [],
                    "result": None,
                },
                status=400,
            )
        if not hmac.compare_digest(presented, self.token):
            if request.path.endswith("/user/tokens/verify"):
                return envelope_error(401, [(1000, "Invalid API Token")])
            return envelope_error(401, [(9109, "Invalid access token")])
        try:
            return await handler(request)
        except CloudflareError as error:
            return error.response()
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            return envelope_error(
                404,
                [
                    (7003, f"Could not route to {request.path}, perhaps your object identifier is invalid?"),
                    (7000, "No route for that URI"),
                ],
            )
        except Exception:
            log.exception("cloudflare sandbox handler failed: %s %s", request.method, request.path)
            return envelope_error(500, [(10001, "Internal server error")])

    # -- helpers ------------------------------------------------------------------------
    def _zone(self, request: web.Request) -> dict[str, Any]:
        zone_id = request.match_info["zone_id"]
        if not _ID.match(zone_id):
            raise CloudflareError(
                404, 7003, f"Could not route to {request.path}, perhaps your object identifier is invalid?"
            )
        zone = self.zones.get(zone_id)
        if zone is None:
            # A token only sees the zones it was granted; an unknown zone looks like a foreign one.
            raise CloudflareError(403, 10000, "Authentication error")
        return zone

    def _record(self, request: web.Request, zone: dict[str, Any]) -> dict[str, Any]:
        record_id = request.match_info["record_id"]
        record = self.records.get(record_id)
        if record is None or record["zone_id"] != zone["id"]:
            raise record_not_found()
        return record

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise CloudflareError(400, 9207, "Request body is invalid.")
        return body

    @staticmethod
    def _page(
        request: web.Request, items: list[Any], default_per_page: int, max_per_page: int
    ) -> tuple[list[Any], dict[str, Any]]:
        try:
            page = int(request.query.get("page", "1"))
            per_page = int(request.query.get("per_page", str(default_per_page)))
        except ValueError:
            raise CloudflareError(400, 1004, "page and per_page must be integers") from None
        if page < 1 or per_page < 1:
            raise CloudflareError(400, 1004, "page and per_page must be positive")
        per_page = min(per_page, max_per_page)
        start = (page - 1) * per_page
        chunk = items[start : start + per_page]
        total_pages = max(1, math.ceil(len(items) / per_page)) if items else 0
        return chunk, {
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": len(items),
            "total_pages": total_pages,
        }

    # -- tokens and zones ---------------------------------------------------------------
    async def verify_token(self, request: web.Request) -> web.Response:
        return envelope(
            {"id": self.token_id, "status": "active"},
            messages=[{"code": 10000, "message": "This API Token is valid and active", "type": None}],
        )

    async def list_zones(self, request: web.Request) -> web.Response:
        zones = sorted(self.zones.values(), key=lambda z: z["name"])
        name = request.query.get("name")
        if name is not None:
            zones = [z for z in zones if z["name"] == name.lower().rstrip(".")]
        status = request.query.get("status")
        if status is not None:
            zones = [z for z in zones if z["status"] == status]
        account_id = request.query.get("account.id")
        if account_id is not None:
            zones = [z for z in zones if z["account"]["id"] == account_id]
        chunk, info = self._page(request, zones, 20, 50)
        return envelope(chunk, result_info=info)

    async def get_zone(self, request: web.Request) -> web.Response:
        return envelope(self._zone(request))

    # -- records ------------------------------------------------------------------------
    def view(self, record: dict[str, Any]) -> dict[str, Any]:
        result = {
            "id": record["id"],
            "name": record["name"],
            "type": record["type"],
            "content": record["content"],
            "proxiable": record["proxiable"],
            "proxied": record["proxied"],
            "ttl": record["ttl"],
            "settings": dict(record.get("settings") or {}),
            "meta": {},
            "comment": record.get("comment"),
            "tags": list(record.get("tags") or []),
            "created_on": record["created_on"],
            "modified_on": record["modified_on"],
        }
        if record.get("priority") is not None:
            result["priority"] = record["priority"]
        if record.get("comment_modified_on"):
            result["comment_modified_on"] = record["comment_modified_on"]
        if record.get("tags_modified_on"):
            result["tags_modified_on"] = record["tags_modified_on"]
        return result

    def _fqdn(self, name: str, zone: dict[str, Any]) -> str:
        name = name.strip().lower().rstrip(".")
        zone_name = zone["name"]
        if name in ("@", ""):
            return zone_name
        if name == zone_name or name.endswith("." + zone_name):
            return name
        return f"{name}.{zone_name}"

    def _validated(
        self, body: dict[str, Any], zone: dict[str, Any], base: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The record ``body`` describes (fields missing from it come from ``base``)."""
        merged = dict(base or {})
        for key in ("name", "type", "content", "ttl", "proxied", "comment", "tags", "priority", "settings"):
            if key in body:
                merged[key] = body[key]
        record_type = merged.get("type")
        if not isinstance(record_type, str) or record_type.upper() not in RECORD_TYPES:
            raise CloudflareError(
                400,
                9004 if record_type is None else 9000,
                "DNS record type is invalid." if record_type is not None else "Record type is required.",
            )
        record_type = record_type.upper()
        name = merged.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CloudflareError(400, 9000, "DNS name is invalid.")
        fqdn = self._fqdn(name, zone)
        if len(fqdn) > 255 or not all(_LABEL.match(label) for label in fqdn.split(".")):
            raise CloudflareError(400, 9000, "DNS name is invalid.")
        content = merged.get("content")
        if not isinstance(content, str):
            content = None
        self._check_content(record_type, content)
        ttl = merged.get("ttl", 1)
        if ttl is None:
            ttl = 1
        if (
            not isinstance(ttl, (int, float))
            or isinstance(ttl, bool)
            or (ttl != 1 and not 30 <= ttl <= 86400)
        ):
            raise CloudflareError(
                400, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic."
            )
        proxied = merged.get("proxied", False)
        if proxied is None:
            proxied = False
        if not isinstance(proxied, bool):
            raise CloudflareError(400, 9207, "Request body is invalid.")
        proxiable = record_type in PROXIABLE_TYPES
        if proxied and not proxiable:
            raise CloudflareError(400, 9041, "Invalid proxied mode. Record cannot be proxied.")
        comment = merged.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 100):
            raise CloudflareError(400, 9102, "Comment is too long or invalid.")
        tags = merged.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise CloudflareError(400, 9207, "Request body is invalid.")
        if tags:
            raise CloudflareError(400, 9300, f"DNS record has {len(tags)} tags, exceeding the quota of 0.")
        priority = merged.get("priority")
        if record_type == "MX" and not isinstance(priority, int):
            raise CloudflareError(400, 9100, "Priority is required for MX records.")
        return {
            "name": fqdn,
            "type": record_type,
            "content": content.lower() if record_type == "CNAME" else content,
            "ttl": 1 if proxied else int(ttl),
            "proxied": proxied,
            "proxiable": proxiable,
            "comment": comment,
            "tags": tags,
            "priority": priority if record_type in ("MX", "SRV", "URI") else None,
            "settings": merged.get("settings") if isinstance(merged.get("settings"), dict) else {},
        }

    @staticmethod
    def _check_content(record_type: str, content: str | None) -> None:
        if record_type == "A":
            try:
                ipaddress.IPv4Address(content or "")
            except ValueError:
                raise CloudflareError(
                    400, 9005, "Content for A record must be a valid IPv4 address."
                ) from None
        elif record_type == "AAAA":
            try:
                ipaddress.IPv6Address(content or "")
            except ValueError:
                raise CloudflareError(
                    400, 9006, "Content for AAAA record must be a valid IPv6 address."
                ) from None
        elif record_type == "CNAME":
            if (
                not content
                or " " in content
                or not all(_LABEL.match(part) for part in content.lower().rstrip(".").split("."))
            ):
                raise CloudflareError(400, 9007, "Content for CNAME record is invalid.")
        elif not content:
            raise CloudflareError(400, 9008, f"Content for {record_type} record is invalid.")

    def _check_conflicts(self, candidate: dict[str, Any], zone_id: str, ignore_id: str | None) -> None:
        for other in self.records.values():
            if other["zone_id"] != zone_id or other["id"] == ignore_id or other["name"] != candidate["name"]:
                continue
            if other["type"] == candidate["type"] and other["content"] == candidate["content"]:
                raise CloudflareError(400, 81058, "An identical record already exists.")
            types = {other["type"], candidate["type"]}
            if "CNAME" in types and types <= {"A", "AAAA", "CNAME"}:
                raise CloudflareError(
                    400, 81053, "An A, AAAA, or CNAME record with that host already exists."
                )

    async def create_record(self, request: web.Request) -> web.Response:
        zone = self._zone(request)
        body = await self._body(request)
        candidate = self._validated(body, zone, base=None)
        self._check_conflicts(candidate, zone["id"], ignore_id=None)
        now = cloudflare_time()
        record_id = _stable_id("record", zone["id"], self.store.next_id("dns_record"))
        record = {"id": record_id, "zone_id": zone["id"], "created_on": now, "modified_on": now, **candidate}
        if candidate["comment"]:
            record["comment_modified_on"] = now
        self.records[record_id] = record
        self._changed_at[record_id] = time.monotonic()
        self.store.mark_dirty()
        return envelope(self.view(record))

    async def get_record(self, request: web.Request) -> web.Response:
        zone = self._zone(request)
        return envelope(self.view(self._record(request, zone)))

    async def overwrite_record(self, request: web.Request) -> web.Response:
        zone = self._zone(request)
        record = self._record(request, zone)
        body = await self._body(request)
        return self._update(record, zone, self._validated(body, zone, base=None))

    async def patch_record(self, request: web.Request) -> web.Response:
        zone = self._zone(request)
        record = self._record(request, zone)
        body = await self._body(request)
        base = {
            key: record[key]
            for key in (
                "name",
                "type",
                "content",
                "ttl",
                "proxied",
                "comment",
                "tags",
                "priority",
                "settings",
            )
        }
        if "proxied" in body and "ttl" not in body and body["proxied"] is False and record["proxied"]:
            base["ttl"] = 1
        return self._update(record, zone, self._validated(body, zone, base=base))

    def _update(
        self, record: dict[str, Any], zone: dict[str, Any], candidate: dict[str, Any]
    ) -> web.Response:
        self._check_conflicts(candidate, zone["id"], ignore_id=record["id"])
        now = cloudflare_time()
        if candidate["comment"] != record.get("comment"):
            record["comment_modified_on"] = now
        record.update(candidate)
        record["modified_on"] = now
        self._changed_at[record["id"]] = time.monotonic()
        self.store.mark_dirty()
        return envelope(self.view(record))

    async def delete_record(self, request: web.Request) -> web.Response:
        zone = self._zone(request)
        record = self._record(request, zone)
        del self.records[record["id"]]
        self.store.mark_dirty()
        return envelope({"id": record["id"]})

    async def list_records(self, request: web.Request) -> web.Response:
        zone = self._zone(request)
        query = request.query
        records = [r for r in self.records.values() if r["zone_id"] == zone["id"]]
        conditions = self._record_filters(query, zone)
        if query.get("match", "all") == "any" and conditions:
            records = [r for r in records if any(condition(r) for condition in conditions)]
        else:
            records = [r for r in records if all(condition(r) for condition in conditions)]
        order = query.get("order")
        if order is not None and order not in _ORDER_FIELDS:
            raise CloudflareError(400, 1004, f"Invalid order field {order}")
        records.sort(
            key=lambda r: (r[order] if order else r["created_on"], r["id"]),
            reverse=query.get("direction") == "desc",
        )
        chunk, info = self._page(request, records, 100, 5000000)
        return envelope([self.view(r) for r in chunk], result_info=info)

    _MATCHERS: dict[str, Callable[[str, str], bool]] = {
        "": lambda have, want: have == want,
        ".exact": lambda have, want: have == want,
        ".contains": lambda have, want: want in have,
        ".startswith": lambda have, want: have.startswith(want),
        ".endswith": lambda have, want: have.endswith(want),
    }

    def _record_filters(self, query: Any, zone: dict[str, Any]) -> list[Callable[[dict[str, Any]], bool]]:
        """One predicate per filter in the query; names compare case-insensitively, as at Cloudflare."""
        conditions: list[Callable[[dict[str, Any]], bool]] = []
        for field in ("name", "content", "comment"):
            for suffix, matches in self._MATCHERS.items():
                if field + suffix not in query:
                    continue
                wanted = query[field + suffix]
                if field == "name":
                    wanted = wanted.lower().rstrip(".")
                    if wanted == "@":
                        wanted = zone["name"]

                def condition(
                    record: dict[str, Any],
                    field: str = field,
                    wanted: str = wanted,
                    matches: Callable[[str, str], bool] = matches,
                ) -> bool:
                    have = record.get(field) or ""
                    return matches(have.lower() if field == "name" else have, wanted)

                conditions.append(condition)
        if "type" in query:
            wanted_type = query["type"].upper()
            conditions.append(lambda record: record["type"] == wanted_type)
        if "proxied" in query:
            wanted_proxied = query["proxied"].lower() == "true"
            conditions.append(lambda record: record["proxied"] == wanted_proxied)
        if "tag" in query:
            wanted_tag = query["tag"]
            conditions.append(lambda record: wanted_tag in record.get("tags", []))
        return conditions

    # -- out-of-band changes (drift) ------------------------------------------------------
    def find_records(self, name: str | None = None, record_type: str | None = None) -> list[dict[str, Any]]:
        zone = self.zones[self.zone_id]
        fqdn = self._fqdn(name, zone) if name else None
        return [
            self.view(r)
            for r in self.records.values()
            if (fqdn is None or r["name"] == fqdn) and (record_type is None or r["type"] == record_type)
        ]

    def drift_set_content(self, record_id: str, content: str) -> dict[str, Any]:
        record = self.records.get(record_id)
        if record is None:
            raise KeyError(f"no DNS record {record_id}")
        record["content"] = content
        record["modified_on"] = cloudflare_time()
        self.store.mark_dirty()
        return self.view(record)

    def drift_delete_record(self, record_id: str) -> None:
        if self.records.pop(record_id, None) is None:
            raise KeyError(f"no DNS record {record_id}")
        self.store.mark_dirty()

    def propagated(self, record_id: str) -> bool:
        """Whether resolvers see the record's current content (the clock's ``dns_propagation``
        after it was created or changed)."""
        changed = self._changed_at.get(record_id)
        wait = self.clock.wall(self.clock.dns_propagation)
        return changed is None or time.monotonic() - changed >= wait

    def inventory(self) -> dict[str, Any]:
        return {
            "zones": [{"id": z["id"], "name": z["name"]} for z in self.zones.values()],
            "dns_records": [
                dict(self.view(r), zone_id=r["zone_id"], propagated=self.propagated(r["id"]))
                for r in sorted(self.records.values(), key=lambda r: r["created_on"])
            ],
        }
