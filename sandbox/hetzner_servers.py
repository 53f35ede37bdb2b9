"""Hetzner Cloud servers: create, read, list, update, delete, power and rebuild actions.

Each server owns a loopback address; while it is running, its system (machines.py: cloud-init,
SSH, the gateway container) comes up there ``boot_delay`` after the server did.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import hetzner_catalog as catalog
from .addresses import ipv6_network_for
from .hetzner_common import (
    MISSING,
    NOT_BOOLEAN,
    NOT_INTEGER,
    NOT_LIST,
    NOT_MAPPING,
    NOT_STRING,
    FieldErrors,
    HcloudError,
    is_hostname,
    is_integer,
    list_actions,
    list_response,
    locked,
    not_found,
    path_id,
    read_body,
    rename_and_relabel,
)
from .http_common import json_response
from .label_selector import label_errors
from .state import hetzner_time

if TYPE_CHECKING:
    from .hetzner import HetznerCloud

USER_DATA_LIMIT = 32 * 1024
POWER_COMMANDS = {
    "poweron": "start_server",
    "poweroff": "stop_server",
    "shutdown": "shutdown_server",
    "reboot": "reboot_server",
    "reset": "reset_server",
}


class ServerService:
    def __init__(self, cloud: HetznerCloud) -> None:
        self.cloud = cloud
        self.store = cloud.store
        self.servers: dict[str, dict[str, Any]] = cloud.store.section("servers")

    # -- lookups and views --------------------------------------------------------------
    def get(self, server_id: int) -> dict[str, Any]:
        server = self.servers.get(str(server_id))
        if server is None:
            raise not_found("server", server_id)
        return server

    def addresses_in_use(self) -> set[str]:
        return {server["address"] for server in self.servers.values()}

    def view(self, server: dict[str, Any]) -> dict[str, Any]:
        server_type = catalog.find_by_id_or_name(catalog.SERVER_TYPES, server["server_type"])
        image = self.cloud.images.find(server["image_id"], server_type["architecture"])
        location = catalog.location_named(server["location"])
        ipv4 = None
        if server["ipv4_enabled"]:
            reverse = ".".join(reversed(server["address"].split(".")))
            ipv4 = {
                "id": server["ipv4_id"],
                "ip": server["address"],
                "blocked": False,
                "dns_ptr": f"static.{reverse}.clients.your-server.de",
            }
        ipv6 = None
        if server["ipv6_enabled"]:
            ipv6 = {
                "id": server["ipv6_id"],
                "ip": ipv6_network_for(server["id"]),
                "blocked": False,
                "dns_ptr": [],
            }
        return {
            "id": server["id"],
            "name": server["name"],
            "status": server["status"],
            "created": server["created"],
            "public_net": {
                "ipv4": ipv4,
                "ipv6": ipv6,
                "floating_ips": [],
                "firewalls": [
                    {"id": fw_id, "status": "applied"}
                    for fw_id in self.cloud.firewalls.applied_to_server(server)
                ],
            },
            "private_net": [],
            "server_type": server_type,
            "datacenter": catalog.datacenter_for_location(server["location"]),
            "location": location,
            "image": image,
            "iso": None,
            "rescue_enabled": False,
            "locked": self.cloud.actions.is_locked("server", server["id"]),
            "backup_window": server.get("backup_window"),
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 21990232555520,
            "protection": dict(server["protection"]),
            "labels": dict(server["labels"]),
            "volumes": [v["id"] for v in self.cloud.volumes.attached_to(server["id"])],
            "load_balancers": [],
            "primary_disk_size": server.get("disk") or server_type["disk"],
            "placement_group": None,
        }

    # -- the system inside (machines.py) ------------------------------------------------
    def boot(self, server: dict[str, Any], delay: float | None = None) -> None:
        """The server came up: its system boots ``boot_delay`` (or ``delay``) seconds from now."""
        self.cloud.machines.power_on(server, delay)

    def halt(self, server: dict[str, Any]) -> None:
        """The server went down: SSH and the gateway stop; the disk stays."""
        self.cloud.machines.power_off(server)

    def restore(self) -> None:
        """After a restart: settle transitional states and bring running gateways back."""
        for server in self.servers.values():
            if server["status"] in ("initializing", "starting", "rebuilding"):
                server["status"] = "running"
            elif server["status"] == "stopping":
                server["status"] = "off"
            self.boot(server, delay=0.0)
        self.store.mark_dirty()

    # -- HTTP handlers ------------------------------------------------------------------
    async def list(self, request: web.Request) -> web.Response:
        return list_response(request, self.servers.values(), "servers", self.view, by_status=True)

    async def get_one(self, request: web.Request) -> web.Response:
        return json_response({"server": self.view(self.get(path_id(request, "server")))})

    async def create(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        spec = self._validate_create(body)
        if any(s["name"] == spec["name"] for s in self.servers.values()):
            raise HcloudError(
                409, "uniqueness_error", "server name is already used", {"fields": [{"name": "name"}]}
            )
        if len(self.servers) >= self.cloud.server_limit:
            raise HcloudError(
                403,
                "resource_limit_exceeded",
                "server limit exceeded",
                {"limits": [{"name": "server_limit"}]},
            )

        server_id = self.store.next_id("server")
        address = self.cloud.allocator.allocate(self.addresses_in_use())
        start = spec["start_after_create"]
        server = {
            "id": server_id,
            "name": spec["name"],
            "status": "initializing",
            "created": hetzner_time(),
            "server_type": spec["server_type"]["name"],
            "image_id": spec["image"]["id"],
            "contents": self.cloud.images.contents_of(spec["image"]),  # sandbox/clock.py
            "location": spec["location"],
            "labels": spec["labels"],
            "user_data": spec["user_data"],
            "ssh_keys": spec["ssh_keys"],
            "ssh_public_keys": [
                self.cloud.firewalls.ssh_keys[str(k)]["public_key"] for k in spec["ssh_keys"]
            ],
            "address": address,
            "ipv4_enabled": spec["enable_ipv4"],
            "ipv6_enabled": spec["enable_ipv6"],
            "ipv4_id": self.store.next_id("primary_ip") if spec["enable_ipv4"] else None,
            "ipv6_id": self.store.next_id("primary_ip") if spec["enable_ipv6"] else None,
            "protection": {"delete": False, "rebuild": False},
            "backup_window": None,
            "gateway_killed": False,
        }
        self.servers[str(server_id)] = server
        for firewall_id in spec["firewalls"]:
            self.cloud.firewalls.attach_server(firewall_id, server_id)
        self.store.mark_dirty()

        def created() -> None:
            if str(server_id) not in self.servers:
                return
            server["status"] = "running" if start else "off"
            self.store.mark_dirty()
            self.boot(server)

        create_seconds = self.cloud.clock.create_seconds(self.cloud.images.is_snapshot(spec["image"]["id"]))
        server["work"] = [{"step": "create server", "seconds": create_seconds}]
        action = self.cloud.actions.start(
            "create_server",
            [(server_id, "server")],
            duration=create_seconds,
            then=created,
            locks=True,
        )
        next_actions = []
        if start:
            next_actions.append(self.cloud.actions.start("start_server", [(server_id, "server")]))
        root_password = None if spec["ssh_keys"] else secrets.token_urlsafe(12)
        return json_response(
            {
                "server": self.view(server),
                "action": action,
                "next_actions": next_actions,
                "root_password": root_password,
            },
            status=201,
        )

    def _validate_create(self, body: dict[str, Any]) -> dict[str, Any]:
        errors = FieldErrors()
        name = errors.required_string(body, "name")
        if name is not None and not is_hostname(name):
            errors.add("name", "Name must be a valid hostname.")

        server_type = self._resolve(errors, body, "server_type", catalog.SERVER_TYPES, required=True)
        architecture = server_type["architecture"] if server_type else "x86"
        image = None
        if body.get("image") is None:
            errors.add("image", MISSING)
        elif not isinstance(body["image"], (str, int)) or isinstance(body["image"], bool):
            errors.add("image", NOT_STRING)
        else:
            image = self.cloud.images.find(body["image"], architecture)
            if image is None:
                errors.add("image", f"image {body['image']} not found")
            elif image["status"] != "available":
                errors.add("image", f"image {body['image']} is not available yet")
            elif image["architecture"] != architecture:
                errors.add("image", f"image {body['image']} is not compatible with server type architecture")

        location = None
        if body.get("location") is not None:
            found = self._resolve(errors, body, "location", catalog.LOCATIONS, required=False)
            location = found["name"] if found else None
        elif body.get("datacenter") is not None:
            found = self._resolve(errors, body, "datacenter", catalog.DATACENTERS, required=False)
            location = found["location"]["name"] if found else None
        else:
            location = "fsn1"
        if server_type and location and location not in {loc["name"] for loc in server_type["locations"]}:
            errors.add(
                "location", f"server type {server_type['name']} is not available in location {location}"
            )

        user_data = errors.optional(body, "user_data", str, NOT_STRING) or ""
        if len(user_data) > USER_DATA_LIMIT:
            errors.add("user_data", f"Length must be between 0 and {USER_DATA_LIMIT}.")

        labels = body.get("labels") or {}
        for message in label_errors(labels):
            errors.add("labels", message)

        start_after_create = errors.optional(body, "start_after_create", bool, NOT_BOOLEAN)
        ssh_keys = self._resolve_ssh_keys(errors, body.get("ssh_keys"))
        firewalls = self._resolve_firewalls(errors, body.get("firewalls"))
        enable_ipv4, enable_ipv6 = True, True
        public_net = body.get("public_net")
        if public_net is not None:
            if not isinstance(public_net, dict):
                errors.add("public_net", NOT_MAPPING)
            else:
                enable_ipv4 = bool(public_net.get("enable_ipv4", True))
                enable_ipv6 = bool(public_net.get("enable_ipv6", True))
        for unsupported in ("volumes", "networks"):
            value = body.get(unsupported)
            if value:
                errors.add(unsupported, f"{unsupported[:-1]} not found")
        if body.get("placement_group") is not None:
            errors.add("placement_group", "placement group not found")
        errors.raise_if_any()
        return {
            "name": name,
            "server_type": server_type,
            "image": image,
            "location": location,
            "user_data": user_data,
            "labels": dict(labels),
            "start_after_create": True if start_after_create is None else start_after_create,
            "ssh_keys": ssh_keys,
            "firewalls": firewalls,
            "enable_ipv4": enable_ipv4,
            "enable_ipv6": enable_ipv6,
        }

    @staticmethod
    def _resolve(
        errors: FieldErrors, body: dict[str, Any], field: str, items: list[dict[str, Any]], required: bool
    ) -> dict[str, Any] | None:
        value = body.get(field)
        if value is None:
            if required:
                errors.add(field, MISSING)
            return None
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            errors.add(field, NOT_STRING)
            return None
        found = catalog.find_by_id_or_name(items, value)
        if found is None:
            errors.add(field, f"{field.replace('_', ' ')} {value} not found")
        return found

    def _resolve_ssh_keys(self, errors: FieldErrors, value: object) -> list[int]:
        if value is None:
            return []
        if not isinstance(value, list):
            errors.add("ssh_keys", NOT_LIST)
            return []
        resolved = []
        for item in value:
            key = self.cloud.firewalls.find_ssh_key(item)
            if key is None:
                errors.add("ssh_keys", f"ssh key {item} not found")
            else:
                resolved.append(key["id"])
        return resolved

    def _resolve_firewalls(self, errors: FieldErrors, value: object) -> list[int]:
        if value is None:
            return []
        if not isinstance(value, list):
            errors.add("firewalls", NOT_LIST)
            return []
        resolved = []
        for item in value:
            firewall_id = item.get("firewall") if isinstance(item, dict) else None
            if not is_integer(firewall_id):
                errors.add("firewalls", NOT_INTEGER)
            elif str(firewall_id) not in self.cloud.firewalls.firewalls:
                errors.add("firewalls", f"firewall {firewall_id} not found")
            else:
                resolved.append(firewall_id)
        return resolved

    async def update(self, request: web.Request) -> web.Response:
        server = self.get(path_id(request, "server"))

        def hostname(errors: FieldErrors, name: str) -> None:
            if not is_hostname(name):
                errors.add("name", "Name must be a valid hostname.")

        rename_and_relabel("server", server, self.servers.values(), await read_body(request), hostname)
        self.store.mark_dirty()
        return json_response({"server": self.view(server)})

    async def delete(self, request: web.Request) -> web.Response:
        server = self.get(path_id(request, "server"))
        if server["protection"]["delete"]:
            raise HcloudError(403, "protected", "server deletion is protected")
        action = self.cloud.actions.start("delete_server", [(server["id"], "server")])
        self.remove(server)
        return json_response({"action": action})

    def remove(self, server: dict[str, Any]) -> None:
        """The server is gone: its system stops, its disk goes, firewalls forget it; DNS is
        untouched."""
        self.cloud.machines.forget(server)
        self.cloud.volumes.forget_server(server["id"])
        self.cloud.firewalls.forget_server(server["id"])
        self.servers.pop(str(server["id"]), None)
        self.store.mark_dirty()

    async def server_actions(self, request: web.Request) -> web.Response:
        server = self.get(path_id(request, "server"))
        return list_actions(request, self.cloud.actions.for_resource("server", server["id"]))

    async def all_server_actions(self, request: web.Request) -> web.Response:
        return list_actions(request, self.cloud.actions.for_resource("server"))

    async def one_server_action(self, request: web.Request) -> web.Response:
        action_id = path_id(request, "action", "action_id")
        action = self.cloud.actions.actions.get(str(action_id))
        if action is None or not any(r["type"] == "server" for r in action["resources"]):
            raise not_found("action", action_id)
        return json_response({"action": action})

    async def action(self, request: web.Request) -> web.Response:
        server = self.get(path_id(request, "server"))
        verb = request.match_info["verb"]
        body = await read_body(request)
        if verb in POWER_COMMANDS:
            return json_response({"action": self.power(server, verb)}, status=201)
        if verb == "rebuild":
            return self._rebuild(server, body)
        if verb == "change_protection":
            return self._change_protection(server, body)
        if verb in ("enable_backup", "disable_backup"):
            server["backup_window"] = "22-02" if verb == "enable_backup" else None
            self.store.mark_dirty()
            return json_response({"action": self._simple_action(server, verb)}, status=201)
        if verb == "change_type":
            return self._change_type(server, body)
        if verb == "create_image":
            return self.cloud.images.create_image(server, body)
        raise HcloudError(404, "not_found", f"action '{verb}' not found")

    def _simple_action(self, server: dict[str, Any], command: str) -> dict[str, Any]:
        return self.cloud.actions.start(command, [(server["id"], "server")])

    def power(self, server: dict[str, Any], verb: str) -> dict[str, Any]:
        if self.cloud.actions.is_locked("server", server["id"]):
            raise locked("server")
        resources = [(server["id"], "server")]
        command = POWER_COMMANDS[verb]
        if verb == "poweron":
            if server["status"] == "running":
                return self.cloud.actions.start(command, resources)
            server["status"] = "starting"

            def started() -> None:
                server["status"] = "running"
                self.store.mark_dirty()
                self.boot(server)

            return self.cloud.actions.start(command, resources, then=started, locks=True)
        if verb in ("poweroff", "shutdown"):
            self.halt(server)
            if server["status"] == "off":
                return self.cloud.actions.start(command, resources)
            server["status"] = "stopping" if verb == "shutdown" else "off"
            self.store.mark_dirty()

            def stopped() -> None:
                if str(server["id"]) in self.servers:
                    server["status"] = "off"
                    self.store.mark_dirty()

            return self.cloud.actions.start(command, resources, then=stopped, locks=True)
        # reboot / reset: the machine restarts; an off server comes up as well on reset.
        self.halt(server)
        if verb == "reboot" and server["status"] == "off":
            return self.cloud.actions.start(command, resources)
        server["status"] = "starting" if server["status"] == "off" else "running"
        server["gateway_killed"] = False

        def restarted() -> None:
            if str(server["id"]) in self.servers:
                server["status"] = "running"
                self.store.mark_dirty()
                self.boot(server)

        return self.cloud.actions.start(command, resources, then=restarted, locks=True)

    def _rebuild(self, server: dict[str, Any], body: dict[str, Any]) -> web.Response:
        errors = FieldErrors()
        server_type = catalog.find_by_id_or_name(catalog.SERVER_TYPES, server["server_type"])
        image = None
        if body.get("image") is None:
            errors.add("image", MISSING)
        else:
            image = self.cloud.images.find(body["image"], server_type["architecture"])
            if image is None:
                errors.add("image", f"image {body['image']} not found")
        user_data = errors.optional(body, "user_data", str, NOT_STRING)
        if user_data is not None and len(user_data) > USER_DATA_LIMIT:
            errors.add("user_data", f"Length must be between 0 and {USER_DATA_LIMIT}.")
        errors.raise_if_any()
        if server["protection"]["rebuild"]:
            raise HcloudError(403, "protected", "server rebuild is protected")
        if self.cloud.actions.is_locked("server", server["id"]):
            raise locked("server")
        self.cloud.machines.reinstall(server)
        server["image_id"] = image["id"]
        server["contents"] = self.cloud.images.contents_of(image)
        if user_data is not None:
            server["user_data"] = user_data
        server["status"] = "rebuilding"
        server["gateway_killed"] = False
        self.store.mark_dirty()

        def rebuilt() -> None:
            if str(server["id"]) in self.servers:
                server["status"] = "running"
                self.store.mark_dirty()
                self.boot(server)

        action = self.cloud.actions.start(
            "rebuild_server", [(server["id"], "server")], then=rebuilt, locks=True
        )
        root_password = None if server["ssh_keys"] else secrets.token_urlsafe(12)
        return json_response({"action": action, "root_password": root_password}, status=201)

    def _change_protection(self, server: dict[str, Any], body: dict[str, Any]) -> web.Response:
        errors = FieldErrors()
        delete = errors.optional(body, "delete", bool, NOT_BOOLEAN)
        rebuild = errors.optional(body, "rebuild", bool, NOT_BOOLEAN)
        errors.raise_if_any()
        if delete is not None:
            server["protection"]["delete"] = delete
        if rebuild is not None:
            server["protection"]["rebuild"] = rebuild
        self.store.mark_dirty()
        return json_response({"action": self._simple_action(server, "change_protection")}, status=201)

    def _change_type(self, server: dict[str, Any], body: dict[str, Any]) -> web.Response:
        errors = FieldErrors()
        server_type = self._resolve(errors, body, "server_type", catalog.SERVER_TYPES, required=True)
        upgrade_disk = errors.optional(body, "upgrade_disk", bool, "must be a boolean")
        errors.raise_if_any()
        if server["status"] != "off":
            raise HcloudError(409, "server_not_stopped", "server must be stopped before changing its type")
        if self.cloud.actions.is_locked("server", server["id"]):
            raise locked("server")
        current = catalog.find_by_id_or_name(catalog.SERVER_TYPES, server["server_type"])
        disk = server.get("disk") or current["disk"]
        if server_type["architecture"] != current["architecture"]:
            raise HcloudError(422, "invalid_server_type", "the server type has another architecture")
        if server_type["disk"] < disk:
            raise HcloudError(
                422, "invalid_server_type", f"the server's disk ({disk} GB) does not fit the new type"
            )
        server["server_type"] = server_type["name"]
        server["disk"] = server_type["disk"] if upgrade_disk else disk
        server["status"] = "starting"
        self.store.mark_dirty()

        def started_again() -> None:  # Hetzner copies the disk, then starts the server again
            if str(server["id"]) in self.servers:
                server["status"] = "running"
                self.store.mark_dirty()
                self.boot(server)

        action = self.cloud.actions.start(
            "change_server_type", [(server["id"], "server")], then=started_again, locks=True
        )
        return json_response({"action": action}, status=201)
