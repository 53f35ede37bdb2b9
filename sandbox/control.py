"""The control API: faults, out-of-band drift and inspection over HTTP (``control_url``).

Every route has a Python twin on ``Sandbox`` (``faults``, ``drift``, ``x``, ``inventory()``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .http_common import json_response

if TYPE_CHECKING:
    from .runtime import Sandbox

FAULT_FIELDS = {
    "service": str,
    "method": str,
    "path": str,
    "error_rate": float,
    "status": int,
    "latency": float,
    "retry_after": float,
    "fail_next": int,
}


def _bad_request(message: str) -> web.Response:
    return json_response({"error": message}, status=400)


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body is not JSON"}), content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "body must be an object"}), content_type="application/json"
        )
    return body


def build_control_app(sandbox: Sandbox) -> web.Application:
    hetzner = sandbox._hetzner
    cloudflare = sandbox._cloudflare
    x = sandbox._x
    routes = web.RouteTableDef()

    @routes.get("/")
    async def describe(request: web.Request) -> web.Response:
        return json_response(sandbox.describe())

    @routes.get("/inventory")
    async def inventory(request: web.Request) -> web.Response:
        return json_response(sandbox._inventory())

    @routes.get("/requests")
    async def requests_seen(request: web.Request) -> web.Response:
        entries = sandbox.journal.entries(request.query.get("service"))
        return json_response([entry.__dict__ for entry in entries])

    @routes.get("/faults")
    async def list_faults(request: web.Request) -> web.Response:
        return json_response(sandbox.faults.rules())

    @routes.post("/faults")
    async def add_fault(request: web.Request) -> web.Response:
        body = await _json(request)
        unknown = set(body) - set(FAULT_FIELDS)
        if unknown:
            return _bad_request(f"unknown fields: {sorted(unknown)}")
        try:
            arguments = {
                key: (FAULT_FIELDS[key](value) if value is not None else None) for key, value in body.items()
            }
            rule = sandbox.faults.add(**arguments)
        except (TypeError, ValueError) as exc:
            return _bad_request(str(exc))
        return json_response(rule.to_dict(), status=201)

    @routes.delete("/faults")
    async def clear_faults(request: web.Request) -> web.Response:
        sandbox.faults.clear()
        return web.Response(status=204)

    @routes.delete("/faults/{rule_id}")
    async def remove_fault(request: web.Request) -> web.Response:
        if not sandbox.faults.remove(int(request.match_info["rule_id"])):
            return json_response({"error": "no such fault rule"}, status=404)
        return web.Response(status=204)

    server_drifts = {
        "delete": hetzner.drift_delete_server,
        "power-off": hetzner.drift_power_off,
        "kill-gateway": hetzner.drift_kill_gateway,
        "revive-gateway": hetzner.drift_revive_gateway,
    }

    @routes.post("/drift/servers/{server_id}/{change}")
    async def server_drift(request: web.Request) -> web.Response:
        change = server_drifts.get(request.match_info["change"])
        if change is None:
            return json_response({"error": f"unknown change; one of {sorted(server_drifts)}"}, status=404)
        try:
            change(int(request.match_info["server_id"]))
        except Exception as exc:
            return json_response({"error": str(exc)}, status=404)
        return json_response({"ok": True})

    @routes.patch("/drift/dns_records/{record_id}")
    async def record_drift(request: web.Request) -> web.Response:
        body = await _json(request)
        if not isinstance(body.get("content"), str):
            return _bad_request("content (string) is required")
        try:
            return json_response(
                cloudflare.drift_set_content(request.match_info["record_id"], body["content"])
            )
        except KeyError as exc:
            return json_response({"error": str(exc)}, status=404)

    @routes.delete("/drift/dns_records/{record_id}")
    async def record_delete(request: web.Request) -> web.Response:
        try:
            cloudflare.drift_delete_record(request.match_info["record_id"])
        except KeyError as exc:
            return json_response({"error": str(exc)}, status=404)
        return web.Response(status=204)

    @routes.get("/x/users")
    async def x_users(request: web.Request) -> web.Response:
        return json_response(x.users)

    @routes.post("/x/users")
    async def x_add_user(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            return json_response(
                x.add_user(str(body.get("username", "")), body.get("name"), body.get("id")), status=201
            )
        except ValueError as exc:
            return _bad_request(str(exc))

    @routes.put("/x/auto-approve")
    async def x_auto(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            x.auto_approve(body.get("username"))
        except ValueError as exc:
            return _bad_request(str(exc))
        return json_response({"auto_approve": x.auto_approve_username})

    @routes.put("/llm/{name}")
    async def llm_settings(request: web.Request) -> web.Response:
        upstream = sandbox.llm_upstreams.get(request.match_info["name"])
        if upstream is None:
            return json_response({"error": "no such LLM upstream"}, status=404)
        body = await _json(request)
        if "chunk_delay" in body:
            upstream.chunk_delay = float(body["chunk_delay"])
        return json_response({"name": upstream.name, "chunk_delay": upstream.chunk_delay})

    @routes.get("/llm/{name}/completions")
    async def llm_completions(request: web.Request) -> web.Response:
        upstream = sandbox.llm_upstreams.get(request.match_info["name"])
        if upstream is None:
            return json_response({"error": "no such LLM upstream"}, status=404)
        return json_response([record.__dict__ for record in upstream.completions()])

    app = web.Application()
    app.add_routes(routes)
    return app
