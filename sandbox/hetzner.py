"""Hetzner Cloud API v1 stand-in: auth, rate limit, catalogue, actions, and the routes of
servers (hetzner_servers.py) and firewalls/SSH keys (hetzner_firewalls.py)."""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import hetzner_catalog as catalog
from .addresses import AddressAllocator
from .clock import Clock
from .faults import FaultInjector
from .gateways import GatewayFleet
from .hetzner_common import ActionBook, HcloudError, list_actions, not_found, paginate, path_id, sort_items
from .hetzner_firewalls import FirewallService
from .hetzner_images import ImageService
from .hetzner_servers import ServerService
from .hetzner_volumes import VolumeService
from .http_common import RequestJournal, fault_and_journal_middleware, json_response
from .machines import Machines
from .state import StateStore

log = logging.getLogger(__name__)

# Collections the real API has that the sandbox keeps empty, so clients listing them succeed.
EMPTY_COLLECTIONS = (
    "primary_ips",
    "floating_ips",
    "networks",
    "placement_groups",
    "load_balancers",
    "certificates",
    "isos",
)


class RateLimiter:
    """Hetzner's bucket: ``limit`` requests, refilled by one per second."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.remaining = float(limit)
        self._updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.remaining = min(self.limit, self.remaining + (now - self._updated))
        self._updated = now
        if self.remaining < 1:
            return False
        self.remaining -= 1
        return True

    def headers(self) -> dict[str, str]:
        seconds_to_full = math.ceil(self.limit - self.remaining)
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(int(self.remaining)),
            "RateLimit-Reset": str(int(time.time()) + seconds_to_full),
        }


class HetznerCloud:
    def __init__(
        self,
        store: StateStore,
        gateways: GatewayFleet,
        allocator: AddressAllocator,
        faults: FaultInjector,
        journal: RequestJournal,
        *,
        token: str,
        clock: Clock,
        rate_limit: int,
        server_limit: int,
        ssh_port: int,
        device_wait: float,
    ) -> None:
        self.store = store
        self.gateways = gateways
        self.allocator = allocator
        self.faults = faults
        self.journal = journal
        self.token = token
        self.clock = clock
        self.server_limit = server_limit
        self.rate_limiter = RateLimiter(rate_limit)
        self.actions = ActionBook(store, clock)
        self.servers = ServerService(self)
        self.firewalls = FirewallService(self)
        self.volumes = VolumeService(self)
        self.images = ImageService(self)
        self.machines = Machines(self, gateways, ssh_port=ssh_port, clock=clock, device_wait=device_wait)

    def restore(self) -> None:
        self.actions.finish_all_running()
        self.servers.restore()
        self.images.restore()

    def shutdown(self) -> None:
        self.actions.cancel_timers()

    # -- the application ----------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                fault_and_journal_middleware("hetzner", self.faults, self.journal, self._fault_response),
                self._api_middleware,
            ]
        )
        servers, firewalls, volumes = self.servers, self.firewalls, self.volumes
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", "/servers", servers.list),
            ("POST", "/servers", servers.create),
            ("GET", "/servers/actions", servers.all_server_actions),
            ("GET", "/servers/actions/{action_id}", servers.one_server_action),
            ("GET", "/servers/{id}", servers.get_one),
            ("PUT", "/servers/{id}", servers.update),
            ("DELETE", "/servers/{id}", servers.delete),
            ("GET", "/servers/{id}/actions", servers.server_actions),
            ("POST", "/servers/{id}/actions/{verb}", servers.action),
            ("GET", "/firewalls", firewalls.list),
            ("POST", "/firewalls", firewalls.create),
            ("GET", "/firewalls/actions", firewalls.all_firewall_actions),
            ("GET", "/firewalls/actions/{action_id}", firewalls.one_firewall_action),
            ("GET", "/firewalls/{id}", firewalls.get_one),
            ("PUT", "/firewalls/{id}", firewalls.update),
            ("DELETE", "/firewalls/{id}", firewalls.delete),
            ("GET", "/firewalls/{id}/actions", firewalls.firewall_actions),
            ("POST", "/firewalls/{id}/actions/{verb}", firewalls.action),
            ("GET", "/volumes", volumes.list),
            ("POST", "/volumes", volumes.create),
            ("GET", "/volumes/{id}", volumes.get_one),
            ("PUT", "/volumes/{id}", volumes.update),
            ("DELETE", "/volumes/{id}", volumes.delete),
            ("GET", "/volumes/{id}/actions", volumes.volume_actions),
            ("POST", "/volumes/{id}/actions/{verb}", volumes.action),
            ("GET", "/ssh_keys", firewalls.list_ssh_keys),
            ("POST", "/ssh_keys", firewalls.create_ssh_key),
            ("GET", "/ssh_keys/{id}", firewalls.get_ssh_key),
            ("PUT", "/ssh_keys/{id}", firewalls.update_ssh_key),
            ("DELETE", "/ssh_keys/{id}", firewalls.delete_ssh_key),
            ("GET", "/actions", self.list_all_actions),
            ("GET", "/actions/{id}", self.get_action),
            ("GET", "/server_types", self._catalog_list("server_types", catalog.SERVER_TYPES)),
            ("GET", "/server_types/{id}", self._catalog_get("server_type", catalog.SERVER_TYPES)),
            ("GET", "/locations", self._catalog_list("locations", catalog.LOCATIONS)),
            ("GET", "/locations/{id}", self._catalog_get("location", catalog.LOCATIONS)),
            ("GET", "/datacenters", self._catalog_list("datacenters", catalog.DATACENTERS)),
            ("GET", "/datacenters/{id}", self._catalog_get("datacenter", catalog.DATACENTERS)),
            ("GET", "/images", self.images.list),
            ("GET", "/images/{id}", self.images.get_one),
            ("PUT", "/images/{id}", self.images.update),
            ("DELETE", "/images/{id}", self.images.delete),
        ]
        for collection in EMPTY_COLLECTIONS:
            routes.append(("GET", f"/{collection}", self._empty_list(collection)))
            routes.append(("GET", f"/{collection}/{{id}}", self._never_found(collection.rstrip("s"))))
        for method, path, handler in routes:
            app.router.add_route(method, "/v1" + path, handler)
        return app

    @staticmethod
    def _fault_response(status: int, retry_after: float | None) -> web.Response:
        codes = {
            400: "invalid_input",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            409: "conflict",
            423: "locked",
            429: "rate_limit_exceeded",
            502: "bad_gateway",
            503: "unavailable",
            504: "timeout",
        }
        code = codes.get(status, "server_error" if status >= 500 else "invalid_input")
        headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after else None
        return HcloudError(status, code, f"injected fault ({status})").response(headers)

    @web.middleware
    async def _api_middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        presented = presented.strip()
        if (
            scheme.lower() != "bearer"
            or len(presented) != 64
            or not hmac.compare_digest(presented, self.token)
        ):
            return HcloudError(401, "unauthorized", "unable to authenticate").response()
        if not self.rate_limiter.take():
            return HcloudError(
                429, "rate_limit_exceeded", f"limit of {self.rate_limiter.limit} requests per hour reached"
            ).response(self.rate_limiter.headers())
        rate_headers = self.rate_limiter.headers()
        try:
            response = await handler(request)
        except HcloudError as error:
            response = error.response()
        except web.HTTPNotFound:
            response = HcloudError(404, "not_found", "not found").response()
        except web.HTTPMethodNotAllowed:
            response = HcloudError(404, "not_found", "not found").response()
        except Exception:
            log.exception("hetzner sandbox handler failed: %s %s", request.method, request.path)
            response = HcloudError(500, "server_error", "internal server error").response()
        response.headers.update(rate_headers)
        response.headers["X-Correlation-Id"] = secrets.token_hex(8)
        return response

    # -- actions ------------------------------------------------------------------------
    async def list_all_actions(self, request: web.Request) -> web.Response:
        return list_actions(request, list(self.actions.actions.values()))

    async def get_action(self, request: web.Request) -> web.Response:
        action_id = path_id(request, "action")
        action = self.actions.actions.get(str(action_id))
        if action is None:
            raise not_found("action", action_id)
        return json_response({"action": action})

    # -- catalogue ----------------------------------------------------------------------
    @staticmethod
    def _catalog_list(key: str, items: list[dict[str, Any]]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            selected = items
            if "name" in request.query:
                selected = [item for item in items if item["name"] == request.query["name"]]
            selected = sort_items(request, selected, ("id", "name"))
            return json_response(paginate(request, selected, key))

        return handler

    @staticmethod
    def _catalog_get(key: str, items: list[dict[str, Any]]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            item_id = path_id(request, key)
            found = next((item for item in items if item["id"] == item_id), None)
            if found is None:
                raise not_found(key, item_id)
            return json_response({key: found})

        return handler

    @staticmethod
    def _empty_list(key: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return json_response(paginate(request, [], key))

        return handler

    @staticmethod
    def _never_found(kind: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            raise not_found(kind, request.match_info["id"])

        return handler

    # -- out-of-band changes (drift) ------------------------------------------------------
    def drift_delete_server(self, server_id: int) -> None:
        self.servers.remove(self.servers.get(server_id))

    def drift_power_off(self, server_id: int) -> None:
        server = self.servers.get(server_id)
        self.servers.halt(server)
        server["status"] = "off"
        self.store.mark_dirty()

    def drift_kill_gateway(self, server_id: int) -> None:
        """The gateway's process dies; the server (and its SSH) stays up."""
        self.machines.kill_gateway(self.servers.get(server_id))
        self.store.mark_dirty()

    def drift_revive_gateway(self, server_id: int) -> None:
        self.machines.revive_gateway(self.servers.get(server_id))
        self.store.mark_dirty()

    def inventory(self) -> dict[str, Any]:
        servers = []
        for server in sorted(self.servers.servers.values(), key=lambda s: s["id"]):
            servers.append(
                {
                    "id": server["id"],
                    "name": server["name"],
                    "status": server["status"],
                    "ipv4": server["address"],
                    "labels": dict(server["labels"]),
                    "firewall_ids": self.firewalls.applied_to_server(server),
                    "volume_ids": [v["id"] for v in self.volumes.attached_to(server["id"])],
                    "gateway": {
                        **self.gateways.describe(server["id"]),
                        "state": self.machines.gateway_state(server["id"]),
                    },
                    **self.machines.describe(server["id"]),
                    "compose_project": server.get("compose_project"),
                    "image_id": server["image_id"],
                    "work": list(server.get("work", [])),  # what its boot and deploys took (clock.py)
                }
            )
        firewalls = [
            self.firewalls.view(f) for f in sorted(self.firewalls.firewalls.values(), key=lambda f: f["id"])
        ]
        ssh_keys = [dict(k) for k in self.firewalls.ssh_keys.values()]
        volumes = [self.volumes.view(v) for v in sorted(self.volumes.volumes.values(), key=lambda v: v["id"])]
        running = sum(1 for a in self.actions.actions.values() if a["status"] == "running")
        return {
            "servers": servers,
            "firewalls": firewalls,
            "ssh_keys": ssh_keys,
            "volumes": volumes,
            "running_actions": running,
        }
