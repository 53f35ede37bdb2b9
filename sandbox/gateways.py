"""The OpenClaw gateway of each running fake server, on ``<its 127.x>:<port>``.

Up to ``real_gateways`` servers run the real OpenClaw gateway (sandbox/real_gateway.py, ~1 GB
each); every other server gets this stand-in. All stand-ins share the sandbox's one event loop;
each is a listening socket with aiohttp's low-level HTTP server, so a thousand of them cost a
thousand file descriptors and little memory. Like the real gateway, a stand-in reads its token
and model provider from the server's files and answers `/v1/chat/completions` for
the token holder by asking that provider (the platform's LLM proxy) with the instance's key. A
stopped gateway closes its listener and its open connections: clients see "connection refused",
as with a dead process.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import shutil
import time
import weakref
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web, web_server

from .cloud_init import GatewayConfig
from .faults import FaultInjector
from .http_common import JournalEntry, RequestJournal
from .openclaw import Install
from .real_gateway import LaunchError, RealGateway

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
        if self.config.broken:
            reason = f"{self.config.image} refused its configuration and keeps restarting"
            return _json({"ok": False, "status": "unhealthy", "reason": reason}, status=503)
        if request.path == "/v1/chat/completions" and request.method == "POST":
            return await self._chat(request)
        if request.method not in ("GET", "HEAD"):
            return _json({"error": "method_not_allowed"}, status=405)
        if request.path == "/v1/models":
            if not self._authorized(request):
                return _unauthorized()
            return _json(
                {"object": "list", "data": [{"id": "openclaw", "object": "model", "owned_by": "openclaw"}]}
            )
        if request.path == "/healthz":
            return _json({"status": "ok"})
        if request.path == "/readyz":
            if not self.config.token:
                return _json({"status": "not_ready", "reason": "no gateway token configured"}, status=503)
            return _json({"status": "ready"})
        if request.path == "/api/status":
            return self._status(request)
        return _json({"error": "not_found"}, status=404)

    def _authorized(self, request: web.BaseRequest) -> bool:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        token = self.config.token
        return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip(), token)

    async def _chat(self, request: web.BaseRequest) -> web.StreamResponse:
        """OpenClaw's OpenAI-compatible endpoint (gateway/openai-http-api.md), answered by the
        configured provider with the instance's key; errors in OpenClaw's shapes."""
        if not self._authorized(request):
            return _json({"error": {"message": "Unauthorized", "type": "unauthorized"}}, status=401)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _json({"error": {"message": "messages is required", "type": "invalid_request_error"}}, 400)
        config = self.config
        if not (config.llm_base_url and config.llm_api_key and config.model):
            return _json({"error": {"message": "no model provider configured", "type": "api_error"}}, 500)
        upstream_body = {"model": config.model, "messages": body["messages"], "stream": False}
        try:
            async with self.fleet.http().post(
                config.llm_base_url.rstrip("/") + "/chat/completions",
                json=upstream_body,
                headers={"Authorization": f"Bearer {config.llm_api_key}"},
                timeout=aiohttp.ClientTimeout(total=60),
            ) as upstream:
                status, answer = upstream.status, await upstream.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return _json({"error": {"message": "upstream provider timeout", "type": "api_error"}}, 408)
        if status == 401:
            message = f"401 {((answer or {}).get('error') or {}).get('message', 'Unauthorized')}"
            return _json({"error": {"message": message, "type": "authentication_error"}}, 401)
        if status != 200:
            return _json({"error": {"message": f"upstream answered {status}", "type": "api_error"}}, 502)
        answer["model"] = "openclaw"
        if not body.get("stream"):
            return _json(answer)
        return await self._stream(request, answer)

    async def _stream(self, request: web.BaseRequest, answer: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        text = answer["choices"][0]["message"]["content"]
        base = {
            "id": answer.get("id", "chatcmpl-sandbox"),
            "object": "chat.completion.chunk",
            "model": "openclaw",
        }
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**base, "choices": [], "usage": answer.get("usage")},
        ]
        for chunk in chunks:
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    def _status(self, request: web.BaseRequest) -> web.Response:
        if not self._authorized(request):
            return _unauthorized()
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


def _unauthorized() -> web.Response:
    return _json(
        {"error": "unauthorized", "message": "a valid gateway token is required"},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="openclaw"'},
    )


class GatewayFleet:
    """Starts and stops gateways on the event loop; every method runs on that loop."""

    def __init__(
        self,
        port: int,
        faults: FaultInjector,
        journal: RequestJournal,
        *,
        servers_dir: Path | None = None,
        real_gateways: int = 0,
        install: Install | None = None,
    ) -> None:
        self.port = port
        self.faults = faults
        self.journal = journal
        self.servers_dir = servers_dir
        self.real_limit = real_gateways if install is not None and servers_dir is not None else 0
        self.install = install
        self._real: dict[int, RealGateway] = {}
        self._all_real: weakref.WeakSet[RealGateway] = weakref.WeakSet()  # also those stopping
        self._stopping: dict[int, asyncio.Task[None]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._running: dict[int, Gateway] = {}
        self._failures: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, server_id: int, server_name: str, address: str, config: GatewayConfig) -> None:
        """(Re)starts the server's gateway from ``config``; returns once it listens (or failed)."""
        self.stop_soon(server_id)
        self._failures.pop(server_id, None)
        await self._boot(server_id, server_name, address, config)

    def config_of(self, server_id: int) -> GatewayConfig | None:
        """What the running gateway was started with."""
        running = self._running.get(server_id) or self._real.get(server_id)
        return running.config if running is not None else None

    def fail(self, server_id: int, reason: str) -> None:
        """The gateway could not start (its container was refused)."""
        self.stop_soon(server_id)
        self._failures[server_id] = reason

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def http(self) -> aiohttp.ClientSession:
        """One pooled client for every stand-in's calls to its model provider."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    def server_dir(self, server_id: int) -> Path:
        assert self.servers_dir is not None
        return self.servers_dir / str(server_id)

    async def _boot(self, server_id: int, server_name: str, address: str, config: GatewayConfig) -> None:
        stopping = self._stopping.pop(server_id, None)
        if stopping is not None:  # a reboot: the old process has let go of the server's disk
            await stopping
        if config.runnable and not config.broken and len(self._real) < self.real_limit:
            real = RealGateway(self.install, self.server_dir(server_id), address, self.port, config)
            self._real[server_id] = real
            self._all_real.add(real)
            try:
                await real.start()
            except (OSError, LaunchError) as exc:
                self._real.pop(server_id, None)
                await real.stop()
                self._failures[server_id] = str(exc)
                log.warning("real gateway of server %s could not start: %s", server_id, exc)
                return
            if self._real.get(server_id) is not real:  # stopped or deleted while it was starting
                await real.stop()
                return
            self._failures.pop(server_id, None)
            return
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
        real = self._real.pop(server_id, None)
        if real is not None:
            self._stopping[server_id] = self._spawn(real.stop())
        gateway = self._running.pop(server_id, None)
        if gateway is not None:
            if gateway._listener is not None:
                gateway._listener.close()
            self._spawn(gateway.close())

    async def stopped(self, server_id: int) -> None:
        """Waits until a real gateway that is stopping has exited (as `docker stop` waits)."""
        stopping = self._stopping.get(server_id)
        if stopping is not None:
            await asyncio.shield(stopping)

    async def forget(self, server_id: int) -> None:
        """The server's disk goes (deleted or rebuilt): its gateway stops first."""
        self.stop_soon(server_id)
        self._failures.pop(server_id, None)
        if self.servers_dir is None:
            return
        stopping = self._stopping.pop(server_id, None)
        if stopping is not None:
            await stopping
        await asyncio.to_thread(shutil.rmtree, self.server_dir(server_id), True)

    def kill_real_now(self) -> None:
        """At interpreter exit, from any thread: no real gateway process outlives the sandbox."""
        for real in list(self._all_real):
            real.kill_now()

    def _reap(self, server_id: int) -> None:
        """A real gateway whose process died is failed, and frees its slot."""
        real = self._real.get(server_id)
        if real is not None and real.exited is not None:
            del self._real[server_id]
            log_file = real.root / "gateway.log"
            tail = log_file.read_text(errors="replace")[-400:] if log_file.exists() else ""
            self._failures[server_id] = f"the gateway exited with status {real.exited}: {tail}"
            self._stopping[server_id] = self._spawn(real.stop())  # closes its forwarder

    def status(self, server_id: int) -> str:
        self._reap(server_id)
        if server_id in self._running or server_id in self._real:
            return "up"
        if server_id in self._failures:
            return "failed"
        return "down"

    def describe(self, server_id: int) -> dict[str, Any]:
        gateway = self._running.get(server_id)
        info: dict[str, Any] = {"state": self.status(server_id)}
        real = self._real.get(server_id)
        if real is not None:
            info.update(kind="openclaw", address=real.address, port=real.port, pid=real.pid)
        if gateway is not None:
            info["kind"] = "stand-in"
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
        return len(self._running) + len(self._real)

    async def stop_all(self) -> None:
        gateways = list(self._running.values())
        self._running.clear()
        reals = list(self._real.values())
        self._real.clear()
        await asyncio.gather(*(gateway.close() for gateway in gateways), return_exceptions=True)
        await asyncio.gather(*(real.stop() for real in reals), return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
