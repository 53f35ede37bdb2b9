"""The OpenClaw gateway stand-in each running fake server serves on ``<its 127.x>:<port>``.

All gateways share the sandbox's one event loop; each is a listening socket with aiohttp's
low-level HTTP server, so a thousand of them cost a thousand file descriptors and little
memory. A stopped gateway closes its listener and its open connections: clients see
"connection refused", as with a dead process.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from aiohttp import web, web_server

from .cloud_init import GatewayConfig
from .faults import FaultInjector
from .http_common import JournalEntry, RequestJournal

log = logging.getLogger(__name__)

GATEWAY_VERSION = "sandbox-openclaw/1.0"


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(payload), status=status, content_type="application/json", headers=headers
    )


class Gateway:
    def __init__(
        self,
        server_id: int,
        server_name: str,
        address: str,
        port: int,
        config: GatewayConfig,
        fleet: GatewayFleet,
    ) -> None:
        self.server_id = server_id
        self.server_name = server_name
        self.address = address
        self.port = port
        self.config = config
        self.fleet = fleet
        self.started_at = 0.0
        self.request_count = 0
        self._listener: asyncio.base_events.Server | None = None
        self._http: web_server.Server | None = None

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._http = web_server.Server(self._handle, access_log=None)
        self._listener = await loop.create_server(
            self._http, self.address, self.port, reuse_address=True, backlog=64
        )
        self.started_at = time.monotonic()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._http is not None:
            await self._http.shutdown(0.05)
        self._listener = None
        self._http = None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.request_count += 1
        status = 500
        try:
            response = await self._answer(request)
            status = response.status
            return response
        finally:
            self.fleet.journal.record(
                JournalEntry(
                    f"gateway:{self.server_id}",
                    request.method,
                    request.path,
                    request.query_string,
                    status,
                    time.time(),
                )
            )

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        for service in (f"gateway:{self.server_id}", "gateway"):
            decision = self.fleet.faults.decide(service, request.method, request.path)
            if decision.latency:
                await asyncio.sleep(decision.latency)
            if decision.fail_status is not None:
                headers = {"Retry-After": str(int(decision.retry_after))} if decision.retry_after else None
                return _json(
                    {"error": "injected_fault", "status": decision.fail_status},
                    status=decision.fail_status,
                    headers=headers,
                )
        if request.method not in ("GET", "HEAD"):
            return _json({"error": "method_not_allowed"}, status=405)
        if request.path == "/healthz":
            return _json({"status": "ok"})
        if request.path == "/readyz":
            if not self.config.token:
                return _json({"status": "not_ready", "reason": "no gateway token configured"}, status=503)
            return _json({"status": "ready"})
        if request.path == "/api/status":
            return self._status(request)
        return _json({"error": "not_found"}, status=404)

    def _status(self, request: web.BaseRequest) -> web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        token = self.config.token
        if not token or scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip(), token):
            return _json(
                {"error": "unauthorized", "message": "a valid gateway token is required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="openclaw"'},
            )
        return _json(
            {
                "status": "running",
                "version": GATEWAY_VERSION,
                "server": {"id": self.server_id, "name": self.server_name},
                "model": self.config.model,
                "llm_base_url": self.config.llm_base_url,
                "llm_configured": bool(self.config.llm_api_key),
                "uptime_seconds": round(time.monotonic() - self.started_at, 3),
            }
        )


class GatewayFleet:
    """Starts and stops gateways on the event loop; every method runs on that loop."""

    def __init__(self, port: int, faults: FaultInjector, journal: RequestJournal) -> None:
        self.port = port
        self.faults = faults
        self.journal = journal
        self._running: dict[int, Gateway] = {}
        self._booting: dict[int, asyncio.TimerHandle] = {}
        self._failures: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self, server_id: int, server_name: str, address: str, config: GatewayConfig, delay: float
    ) -> None:
        """Boots (or reboots) the server's gateway ``delay`` seconds from now."""
        self.stop_soon(server_id)
        loop = asyncio.get_running_loop()
        self._booting[server_id] = loop.call_later(
            delay, lambda: self._spawn(self._boot(server_id, server_name, address, config))
        )

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _boot(self, server_id: int, server_name: str, address: str, config: GatewayConfig) -> None:
        self._booting.pop(server_id, None)
        gateway = Gateway(server_id, server_name, address, self.port, config, self)
        try:
            await gateway.listen()
        except OSError as exc:
            self._failures[server_id] = str(exc)
            log.warning(
                "gateway of server %s could not listen on %s:%s: %s", server_id, address, self.port, exc
            )
            return
        self._failures.pop(server_id, None)
        self._running[server_id] = gateway

    def stop_soon(self, server_id: int) -> None:
        """Stops the gateway now (listener closed at once, connections just after)."""
        handle = self._booting.pop(server_id, None)
        if handle is not None:
            handle.cancel()
        gateway = self._running.pop(server_id, None)
        if gateway is not None:
            if gateway._listener is not None:
                gateway._listener.close()
            self._spawn(gateway.close())

    def status(self, server_id: int) -> str:
        if server_id in self._running:
            return "up"
        if server_id in self._booting:
            return "booting"
        if server_id in self._failures:
            return "failed"
        return "down"

    def describe(self, server_id: int) -> dict[str, Any]:
        gateway = self._running.get(server_id)
        info: dict[str, Any] = {"state": self.status(server_id)}
        if gateway is not None:
            info.update(
                address=gateway.address,
                port=gateway.port,
                requests=gateway.request_count,
                has_token=bool(gateway.config.token),
                model=gateway.config.model,
            )
        if server_id in self._failures:
            info["error"] = self._failures[server_id]
        return info

    def up_count(self) -> int:
        return len(self._running)

    async def stop_all(self) -> None:
        for handle in self._booting.values():
            handle.cancel()
        self._booting.clear()
        gateways = list(self._running.values())
        self._running.clear()
        await asyncio.gather(*(gateway.close() for gateway in gateways), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
