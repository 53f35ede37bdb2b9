"""Hetzner Cloud firewalls (rules, application to servers and label selectors) and SSH keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .hetzner_common import (
    MISSING,
    NOT_LIST,
    NOT_MAPPING,
    NOT_STRING,
    FieldErrors,
    HcloudError,
    is_integer,
    label_filter,
    list_actions,
    list_response,
    not_found,
    paginate,
    path_id,
    read_body,
    rename_and_relabel,
    sort_items,
)
from .http_common import json_response
from .label_selector import InvalidSelector, label_errors, parse_selector
from .state import hetzner_time

if TYPE_CHECKING:
    from .hetzner import HetznerCloud

PROTOCOLS = ("tcp", "udp", "icmp", "esp", "gre")
MAX_RULES = 50
_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")
_SSH_KEY = re.compile(
    r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-\S+)\s+([A-Za-z0-9+/=]+)(\s.*)?$"
)


class FirewallService:
    def __init__(self, cloud: HetznerCloud) -> None:
        self.cloud = cloud
        self.store = cloud.store
        self.firewalls: dict[str, dict[str, Any]] = cloud.store.section("firewalls")
        self.ssh_keys: dict[str, dict[str, Any]] = cloud.store.section("ssh_keys")

    # -- relations with servers ---------------------------------------------------------
    def applied_to_server(self, server: dict[str, Any]) -> list[int]:
        ids = []
        for firewall in self.firewalls.values():
            if server["id"] in firewall["servers"]:
                ids.append(firewall["id"])
                continue
            for selector in firewall["selectors"]:
                try:
                    if parse_selector(selector)(server["labels"]):
                        ids.append(firewall["id"])
                        break
                except InvalidSelector:
                    continue
        return sorted(ids)

    def admits(self, server: dict[str, Any], protocol: str, port: int, address: str) -> bool:
        """Hetzner's inbound filtering: with no firewall applied everything comes in; with some,
        only what an inbound rule of one of them allows (protocol, port, source)."""
        applied = self.applied_to_server(server)
        if not applied:
            return True
        client = ipaddress.ip_address(address)
        for firewall_id in applied:
            for rule in self.firewalls[str(firewall_id)]["rules"]:
                if rule["direction"] != "in" or rule["protocol"] != protocol:
                    continue
                if not _port_covers(rule.get("port"), port):
                    continue
                if any(client in ipaddress.ip_network(cidr) for cidr in rule["source_ips"]):
                    return True
        return False

    def attach_server(self, firewall_id: int, server_id: int) -> None:
        servers = self.firewalls[str(firewall_id)]["servers"]
        if server_id not in servers:
            servers.append(server_id)
            self.store.mark_dirty()

    def forget_server(self, server_id: int) -> None:
        for firewall in self.firewalls.values():
            if server_id in firewall["servers"]:
                firewall["servers"].remove(server_id)
                self.store.mark_dirty()

    def get(self, firewall_id: int) -> dict[str, Any]:
        firewall = self.firewalls.get(str(firewall_id))
        if firewall is None:
            raise not_found("firewall", firewall_id)
        return firewall

    def view(self, firewall: dict[str, Any]) -> dict[str, Any]:
        servers = self.cloud.servers.servers
        applied = [{"type": "server", "server": {"id": sid}} for sid in firewall["servers"]]
        for selector in firewall["selectors"]:
            matches = parse_selector(selector)
            targets = [
                {"type": "server", "server": {"id": s["id"]}}
                for s in sorted(servers.values(), key=lambda s: s["id"])
                if matches(s["labels"])
            ]
            applied.append(
                {
                    "type": "label_selector",
                    "label_selector": {"selector": selector},
                    "applied_to_resources": targets,
                }
            )
        return {
            "id": firewall["id"],
            "name": firewall["name"],
            "labels": dict(firewall["labels"]),
            "created": firewall["created"],
            "rules": [dict(rule) for rule in firewall["rules"]],
            "applied_to": applied,
        }

    # -- validation ---------------------------------------------------------------------
    def _rules(self, errors: FieldErrors, value: object) -> list[dict[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list):
            errors.add("rules", NOT_LIST)
            return []
        if len(value) > MAX_RULES:
            errors.add("rules", f"Longer than maximum length {MAX_RULES}.")
        rules = []
        for index, raw in enumerate(value):
            where = f"rules.{index}"
            if not isinstance(raw, dict):
                errors.add(where, NOT_MAPPING)
                continue
            direction = raw.get("direction")
            protocol = raw.get("protocol")
            if direction not in ("in", "out"):
                errors.add(f"{where}.direction", MISSING if direction is None else "Must be one of: in, out.")
            if protocol not in PROTOCOLS:
                errors.add(
                    f"{where}.protocol",
                    MISSING if protocol is None else f"Must be one of: {', '.join(PROTOCOLS)}.",
                )
            port = raw.get("port")
            if protocol in ("tcp", "udp"):
                if port is None:
                    errors.add(f"{where}.port", "port is required for protocol tcp and udp")
                elif not self._valid_port(port):
                    errors.add(f"{where}.port", "invalid port or port range")
            elif port is not None:
                errors.add(f"{where}.port", f"port is not allowed for protocol {protocol}")
            source_ips = self._cidrs(errors, f"{where}.source_ips", raw.get("source_ips"))
            destination_ips = self._cidrs(errors, f"{where}.destination_ips", raw.get("destination_ips"))
            if direction == "in" and not source_ips:
                errors.add(f"{where}.source_ips", "source_ips is required for direction in")
            if direction == "out" and not destination_ips:
                errors.add(f"{where}.destination_ips", "destination_ips is required for direction out")
            description = raw.get("description")
            if description is not None and (not isinstance(description, str) or len(description) > 255):
                errors.add(f"{where}.description", "Length must be between 0 and 255.")
            rules.append(
                {
                    "direction": direction,
                    "protocol": protocol,
                    "port": port,
                    "source_ips": source_ips if direction == "in" else [],
                    "destination_ips": destination_ips if direction == "out" else [],
                    "description": description,
                }
            )
        return rules

    @staticmethod
    def _valid_port(port: object) -> bool:
        if not isinstance(port, str):
            return False
        if port == "any":
            return True
        match = _PORT.match(port)
        if not match:
            return False
        low = int(match.group(1))
        high = int(match.group(2) or low)
        return 1 <= low <= high <= 65535

    @staticmethod
    def _cidrs(errors: FieldErrors, field: str, value: object) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            errors.add(field, NOT_LIST)
            return []
        cidrs = []
        for item in value:
            try:
                cidrs.append(str(ipaddress.ip_network(item, strict=True)) if isinstance(item, str) else "")
                if not isinstance(item, str):
                    raise ValueError
            except ValueError:
                errors.add(field, f"invalid CIDR {item!r}")
        return [cidr for cidr in cidrs if cidr]

    def _resources(self, errors: FieldErrors, field: str, value: object) -> tuple[list[int], list[str]]:
        servers, selectors = [], []
        if value is None:
            return servers, selectors
        if not isinstance(value, list):
            errors.add(field, NOT_LIST)
            return servers, selectors
        for item in value:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "server":
                server_id = (item.get("server") or {}).get("id")
                if not is_integer(server_id):
                    errors.add(field, "server.id must be an integer")
                else:
                    servers.append(server_id)
            elif kind == "label_selector":
                selector = (item.get("label_selector") or {}).get("selector")
                try:
                    parse_selector(selector if isinstance(selector, str) else "")
                    selectors.append(selector)
                except InvalidSelector as exc:
                    errors.add(field, f"invalid label selector: {exc}")
            else:
                errors.add(field, "type must be one of: server, label_selector")
        return servers, selectors

    def _check_servers_exist(self, server_ids: list[int]) -> None:
        for server_id in server_ids:
            if str(server_id) not in self.cloud.servers.servers:
                raise HcloudError(
                    404, "firewall_resource_not_found", f"server with ID '{server_id}' not found"
                )

    # -- firewall handlers --------------------------------------------------------------
    async def list(self, request: web.Request) -> web.Response:
        return list_response(request, self.firewalls.values(), "firewalls", self.view)

    async def get_one(self, request: web.Request) -> web.Response:
        return json_response({"firewall": self.view(self.get(path_id(request, "firewall")))})

    async def create(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        errors = FieldErrors()
        name = errors.required_string(body, "name")
        if name is not None and not 1 <= len(name) <= 128:
            errors.add("name", "Length must be between 1 and 128.")
        labels = body.get("labels") or {}
        for message in label_errors(labels):
            errors.add("labels", message)
        rules = self._rules(errors, body.get("rules"))
        servers, selectors = self._resources(errors, "apply_to", body.get("apply_to"))
        errors.raise_if_any()
        if any(f["name"] == name for f in self.firewalls.values()):
            raise HcloudError(
                409, "uniqueness_error", "firewall name is already used", {"fields": [{"name": "name"}]}
            )
        self._check_servers_exist(servers)
        firewall_id = self.store.next_id("firewall")
        firewall = {
            "id": firewall_id,
            "name": name,
            "labels": dict(labels),
            "created": hetzner_time(),
            "rules": rules,
            "servers": sorted(set(servers)),
            "selectors": selectors,
        }
        self.firewalls[str(firewall_id)] = firewall
        self.store.mark_dirty()
        actions = [self.cloud.actions.start("set_firewall_rules", [(firewall_id, "firewall")])]
        for server_id in firewall["servers"]:
            actions.append(
                self.cloud.actions.start("apply_firewall", [(firewall_id, "firewall"), (server_id, "server")])
            )
        return json_response({"firewall": self.view(firewall), "actions": actions}, status=201)

    async def update(self, request: web.Request) -> web.Response:
        firewall = self.get(path_id(request, "firewall"))
        rename_and_relabel("firewall", firewall, self.firewalls.values(), await read_body(request))
        self.store.mark_dirty()
        return json_response({"firewall": self.view(firewall)})

    async def delete(self, request: web.Request) -> web.Response:
        firewall = self.get(path_id(request, "firewall"))
        if firewall["servers"] or firewall["selectors"]:
            raise HcloudError(422, "resource_in_use", f"firewall with ID '{firewall['id']}' is still in use")
        del self.firewalls[str(firewall["id"])]
        self.store.mark_dirty()
        return web.Response(status=204)

    async def firewall_actions(self, request: web.Request) -> web.Response:
        firewall = self.get(path_id(request, "firewall"))
        return list_actions(request, self.cloud.actions.for_resource("firewall", firewall["id"]))

    async def all_firewall_actions(self, request: web.Request) -> web.Response:
        return list_actions(request, self.cloud.actions.for_resource("firewall"))

    async def one_firewall_action(self, request: web.Request) -> web.Response:
        action_id = path_id(request, "action", "action_id")
        action = self.cloud.actions.actions.get(str(action_id))
        if action is None or not any(r["type"] == "firewall" for r in action["resources"]):
            raise not_found("action", action_id)
        return json_response({"action": action})

    async def action(self, request: web.Request) -> web.Response:
        firewall = self.get(path_id(request, "firewall"))
        verb = request.match_info["verb"]
        body = await read_body(request)
        firewall_ref = (firewall["id"], "firewall")
        errors = FieldErrors()
        if verb == "set_rules":
            if "rules" not in body:
                errors.add("rules", MISSING)
            rules = self._rules(errors, body.get("rules"))
            errors.raise_if_any()
            firewall["rules"] = rules
            self.store.mark_dirty()
            actions = [self.cloud.actions.start("set_firewall_rules", [firewall_ref])]
            for server_id in firewall["servers"]:
                actions.append(
                    self.cloud.actions.start("apply_firewall", [firewall_ref, (server_id, "server")])
                )
            return json_response({"actions": actions}, status=201)
        if verb in ("apply_to_resources", "remove_from_resources"):
            field = "apply_to" if verb == "apply_to_resources" else "remove_from"
            if field not in body:
                errors.add(field, MISSING)
            servers, selectors = self._resources(errors, field, body.get(field))
            errors.raise_if_any()
            self._check_servers_exist(servers if verb == "apply_to_resources" else [])
            if verb == "apply_to_resources":
                return self._apply(firewall, servers, selectors)
            return self._remove(firewall, servers, selectors)
        raise HcloudError(404, "not_found", f"action '{verb}' not found")

    def _apply(self, firewall: dict[str, Any], servers: list[int], selectors: list[str]) -> web.Response:
        for server_id in servers:
            if server_id in firewall["servers"]:
                raise HcloudError(
                    422, "firewall_already_applied", f"firewall already applied to server {server_id}"
                )
        for selector in selectors:
            if selector in firewall["selectors"]:
                raise HcloudError(
                    422, "firewall_already_applied", f"firewall already applied to label selector {selector}"
                )
        firewall["servers"] = sorted(set(firewall["servers"]) | set(servers))
        firewall["selectors"].extend(selectors)
        self.store.mark_dirty()
        actions = [
            self.cloud.actions.start("apply_firewall", [(firewall["id"], "firewall"), (sid, "server")])
            for sid in servers
        ]
        if selectors:
            actions.append(self.cloud.actions.start("apply_firewall", [(firewall["id"], "firewall")]))
        return json_response({"actions": actions}, status=201)

    def _remove(self, firewall: dict[str, Any], servers: list[int], selectors: list[str]) -> web.Response:
        for server_id in servers:
            if server_id not in firewall["servers"]:
                raise HcloudError(
                    422, "firewall_already_removed", f"firewall is not applied to server {server_id}"
                )
        for selector in selectors:
            if selector not in firewall["selectors"]:
                raise HcloudError(
                    422, "firewall_already_removed", f"firewall is not applied to label selector {selector}"
                )
        firewall["servers"] = [sid for sid in firewall["servers"] if sid not in servers]
        firewall["selectors"] = [s for s in firewall["selectors"] if s not in selectors]
        self.store.mark_dirty()
        actions = [
            self.cloud.actions.start("remove_firewall", [(firewall["id"], "firewall"), (sid, "server")])
            for sid in servers
        ]
        if selectors:
            actions.append(self.cloud.actions.start("remove_firewall", [(firewall["id"], "firewall")]))
        return json_response({"actions": actions}, status=201)

    # -- SSH keys -----------------------------------------------------------------------
    def find_ssh_key(self, id_or_name: object) -> dict[str, Any] | None:
        for key in self.ssh_keys.values():
            if is_integer(id_or_name) and key["id"] == id_or_name:
                return key
            if isinstance(id_or_name, str) and (key["name"] == id_or_name or str(key["id"]) == id_or_name):
                return key
        return None

    async def list_ssh_keys(self, request: web.Request) -> web.Response:
        keys = sorted(self.ssh_keys.values(), key=lambda k: k["id"])
        for field in ("name", "fingerprint"):
            if field in request.query:
                keys = [k for k in keys if k[field] == request.query[field]]
        matches = label_filter(request)
        if matches is not None:
            keys = [k for k in keys if matches(k["labels"])]
        keys = sort_items(request, keys, ("id", "name"))
        return json_response(paginate(request, keys, "ssh_keys"))

    def _ssh_key(self, request: web.Request) -> dict[str, Any]:
        key_id = path_id(request, "ssh_key")
        key = self.ssh_keys.get(str(key_id))
        if key is None:
            raise not_found("ssh_key", key_id)
        return key

    async def get_ssh_key(self, request: web.Request) -> web.Response:
        return json_response({"ssh_key": self._ssh_key(request)})

    async def create_ssh_key(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        errors = FieldErrors()
        name = errors.required_string(body, "name")
        public_key = errors.required_string(body, "public_key")
        fingerprint = None
        if public_key is not None:
            match = _SSH_KEY.match(public_key.strip())
            try:
                blob = base64.b64decode(match.group(4), validate=True) if match else None
            except binascii.Error:
                blob = None
            if not blob:
                errors.add("public_key", "invalid public key")
            else:
                digest = hashlib.md5(blob).hexdigest()
                fingerprint = ":".join(digest[i : i + 2] for i in range(0, 32, 2))
        labels = body.get("labels") or {}
        for message in label_errors(labels):
            errors.add("labels", message)
        errors.raise_if_any()
        for key in self.ssh_keys.values():
            if key["name"] == name:
                raise HcloudError(
                    409,
                    "uniqueness_error",
                    "SSH key with the same name already exists",
                    {"fields": [{"name": "name"}]},
                )
            if key["fingerprint"] == fingerprint:
                raise HcloudError(
                    409,
                    "uniqueness_error",
                    "SSH key with the same fingerprint already exists",
                    {"fields": [{"name": "public_key"}]},
                )
        key_id = self.store.next_id("ssh_key")
        key = {
            "id": key_id,
            "name": name,
            "fingerprint": fingerprint,
            "public_key": public_key.strip(),
            "labels": dict(labels),
            "created": hetzner_time(),
        }
        self.ssh_keys[str(key_id)] = key
        self.store.mark_dirty()
        return json_response({"ssh_key": key}, status=201)

    async def update_ssh_key(self, request: web.Request) -> web.Response:
        key = self._ssh_key(request)
        body = await read_body(request)
        errors = FieldErrors()
        name = errors.optional(body, "name", str, NOT_STRING)
        labels = body.get("labels")
        if labels is not None:
            for message in label_errors(labels):
                errors.add("labels", message)
        errors.raise_if_any()
        if name is not None:
            key["name"] = name
        if labels is not None:
            key["labels"] = dict(labels)
        self.store.mark_dirty()
        return json_response({"ssh_key": key})

    async def delete_ssh_key(self, request: web.Request) -> web.Response:
        key = self._ssh_key(request)
        del self.ssh_keys[str(key["id"])]
        self.store.mark_dirty()
        return web.Response(status=204)


def _port_covers(rule_port: str | None, port: int) -> bool:
    if rule_port in (None, "any"):
        return True
    low, _, high = str(rule_port).partition("-")
    return int(low) <= port <= int(high or low)
