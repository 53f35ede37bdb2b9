"""Hetzner Cloud volumes: create (formatted, optionally attached), attach, detach, resize,
protection, labels, and the disk a fake server sees while a volume is attached.

Shapes and errors follow the real API (hcloud-go's schema): sizes 10-10240 GB and only grow,
`linux_device` is `/dev/disk/by-id/scsi-0HC_Volume_<id>`, a volume attaches to one server in
its own location (`volume_already_attached`, `invalid_input`), and an attached or protected
volume cannot be deleted. Each volume's data is a folder (`volumes/<id>/` beside the state file)
that a fake server's cloud-init `mounts` entry points at while the volume is attached to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import hetzner_catalog as catalog
from .hetzner_common import (
    FieldErrors,
    HcloudError,
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

MIN_SIZE, MAX_SIZE = 10, 10240
FORMATS = ("ext4", "xfs")
DEVICE_PREFIX = "/dev/disk/by-id/scsi-0HC_Volume_"


def linux_device(volume_id: int) -> str:
    return f"{DEVICE_PREFIX}{volume_id}"


class VolumeService:
    def __init__(self, cloud: HetznerCloud) -> None:
        self.cloud = cloud
        self.store = cloud.store
        self.volumes: dict[str, dict[str, Any]] = cloud.store.section("volumes")

    def data_dir(self, volume_id: int) -> Path:
        return self.store.path.parent / "volumes" / str(volume_id)

    # -- relations with servers ---------------------------------------------------------
    def attached_to(self, server_id: int) -> list[dict[str, Any]]:
        return sorted((v for v in self.volumes.values() if v["server"] == server_id), key=lambda v: v["id"])

    def device_dirs(self, server_id: int) -> dict[str, Path]:
        """What the server sees: linux_device -> the volume's data, for its attached volumes."""
        return {linux_device(v["id"]): self.data_dir(v["id"]) for v in self.attached_to(server_id)}

    def forget_server(self, server_id: int) -> None:
        """The server is deleted: Hetzner detaches its volumes, which keep their data."""
        for volume in self.attached_to(server_id):
            volume["server"] = None
            self.store.mark_dirty()

    def get(self, volume_id: int) -> dict[str, Any]:
        volume = self.volumes.get(str(volume_id))
        if volume is None:
            raise not_found("volume", volume_id)
        return volume

    def view(self, volume: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": volume["id"],
            "name": volume["name"],
            "server": volume["server"],
            "status": volume["status"],
            "location": catalog.location_named(volume["location"]),
            "size": volume["size"],
            "format": volume["format"],
            "protection": dict(volume["protection"]),
            "labels": dict(volume["labels"]),
            "linux_device": linux_device(volume["id"]),
            "created": volume["created"],
        }

    # -- HTTP handlers ------------------------------------------------------------------
    async def list(self, request: web.Request) -> web.Response:
        return list_response(request, self.volumes.values(), "volumes", self.view, by_status=True)

    async def get_one(self, request: web.Request) -> web.Response:
        return json_response({"volume": self.view(self.get(path_id(request, "volume")))})

    async def create(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        errors = FieldErrors()
        name = errors.required_string(body, "name")
        size = body.get("size")
        if size is None:
            errors.add("size", "Missing data for required field.")
        elif not is_integer(size) or not MIN_SIZE <= size <= MAX_SIZE:
            errors.add("size", f"Must be between {MIN_SIZE} and {MAX_SIZE}.")
        labels = body.get("labels") or {}
        for message in label_errors(labels):
            errors.add("labels", message)
        volume_format = body.get("format")
        if volume_format is not None and volume_format not in FORMATS:
            errors.add("format", f"Must be one of: {', '.join(FORMATS)}.")
        server = self._server(errors, body.get("server"))
        location = None
        if body.get("location") is not None:
            found = catalog.find_by_id_or_name(catalog.LOCATIONS, body["location"])
            if found is None:
                errors.add("location", f"location {body['location']} not found")
            location = found["name"] if found else None
        if server is None and body.get("location") is None and "server" not in errors.fields:
            errors.add("location", "either location or server must be given")
        if server is not None and location is not None and server["location"] != location:
            errors.add("location", "the volume must be in the location of the server")
        errors.raise_if_any()
        if any(v["name"] == name for v in self.volumes.values()):
            raise HcloudError(
                409, "uniqueness_error", "volume name is already used", {"fields": [{"name": "name"}]}
            )
        volume_id = self.store.next_id("volume")
        volume = {
            "id": volume_id,
            "name": name,
            "server": None,
            "status": "creating",
            "location": server["location"] if server else location,
            "size": size,
            "format": volume_format,
            "protection": {"delete": False},
            "labels": dict(labels),
            "created": hetzner_time(),
        }
        self.volumes[str(volume_id)] = volume
        self.data_dir(volume_id).mkdir(parents=True, exist_ok=True)
        self.store.mark_dirty()

        def available() -> None:
            volume["status"] = "available"
            self.store.mark_dirty()

        action = self.cloud.actions.start(
            "create_volume", [(volume_id, "volume")], then=available, locks=True
        )
        next_actions = []
        if server is not None:
            next_actions.append(self._attach(volume, server, automount=bool(body.get("automount"))))
        return json_response(
            {"volume": self.view(volume), "action": action, "next_actions": next_actions}, status=201
        )

    async def update(self, request: web.Request) -> web.Response:
        volume = self.get(path_id(request, "volume"))
        rename_and_relabel("volume", volume, self.volumes.values(), await read_body(request))
        self.store.mark_dirty()
        return json_response({"volume": self.view(volume)})

    async def delete(self, request: web.Request) -> web.Response:
        volume = self.get(path_id(request, "volume"))
        if volume["protection"]["delete"]:
            raise HcloudError(403, "protected", "volume deletion is protected")
        if volume["server"] is not None:
            raise HcloudError(
                400, "invalid_input", f"volume with ID '{volume['id']}' is attached to a server; detach first"
            )
        if self.cloud.actions.is_locked("volume", volume["id"]):
            raise locked("volume")
        del self.volumes[str(volume["id"])]
        shutil.rmtree(self.data_dir(volume["id"]), ignore_errors=True)
        self.store.mark_dirty()
        return web.Response(status=204)

    async def volume_actions(self, request: web.Request) -> web.Response:
        volume = self.get(path_id(request, "volume"))
        return list_actions(request, self.cloud.actions.for_resource("volume", volume["id"]))

    async def action(self, request: web.Request) -> web.Response:
        volume = self.get(path_id(request, "volume"))
        verb = request.match_info["verb"]
        body = await read_body(request)
        errors = FieldErrors()
        if self.cloud.actions.is_locked("volume", volume["id"]):
            raise locked("volume")
        if verb == "attach":
            server = self._server(errors, body.get("server"), required=True)
            errors.raise_if_any()
            if volume["server"] is not None:
                raise HcloudError(422, "volume_already_attached", "volume is already attached to a server")
            if server["location"] != volume["location"]:
                raise HcloudError(400, "invalid_input", "server and volume must be in the same location")
            return json_response(
                {"action": self._attach(volume, server, bool(body.get("automount")))}, status=201
            )
        if verb == "detach":
            if volume["server"] is None:
                raise HcloudError(400, "invalid_input", "volume is not attached to a server")
            server = self.cloud.servers.servers.get(str(volume["server"]))

            def detached() -> None:
                volume["server"] = None
                self.store.mark_dirty()
                if server is not None and str(server["id"]) in self.cloud.servers.servers:
                    self.cloud.machines.volumes_changed(server)

            resources = [(volume["id"], "volume")] + ([(server["id"], "server")] if server else [])
            action = self.cloud.actions.start("detach_volume", resources, then=detached, locks=True)
            return json_response({"action": action}, status=201)
        if verb == "resize":
            size = body.get("size")
            if not is_integer(size) or not MIN_SIZE <= size <= MAX_SIZE:
                errors.add("size", f"Must be between {MIN_SIZE} and {MAX_SIZE}.")
            elif size < volume["size"]:
                errors.add(
                    "size", "A volume can only grow; the new size must be larger than the current one."
                )
            errors.raise_if_any()
            volume["size"] = size
            self.store.mark_dirty()
            return json_response(
                {"action": self.cloud.actions.start("resize_volume", [(volume["id"], "volume")])}, status=201
            )
        if verb == "change_protection":
            if not isinstance(body.get("delete"), bool):
                errors.add("delete", "Not a valid boolean.")
            errors.raise_if_any()
            volume["protection"]["delete"] = body["delete"]
            self.store.mark_dirty()
            action = self.cloud.actions.start("change_protection", [(volume["id"], "volume")])
            return json_response({"action": action}, status=201)
        raise HcloudError(404, "not_found", f"action '{verb}' not found")

    # -- pieces -------------------------------------------------------------------------
    def _server(self, errors: FieldErrors, value: object, *, required: bool = False) -> dict[str, Any] | None:
        if value is None:
            if required:
                errors.add("server", "Missing data for required field.")
            return None
        if not is_integer(value):
            errors.add("server", "Not a valid integer.")
            return None
        server = self.cloud.servers.servers.get(str(value))
        if server is None:
            raise not_found("server", value)
        return server

    def _attach(self, volume: dict[str, Any], server: dict[str, Any], automount: bool) -> dict[str, Any]:
        """Attached when the action finishes; meanwhile the volume and the server are locked."""
        if self.cloud.actions.is_locked("server", server["id"]):
            raise locked("server")

        def attached() -> None:
            if str(server["id"]) in self.cloud.servers.servers:
                volume["server"] = server["id"]
                self.store.mark_dirty()
                self.cloud.machines.volumes_changed(server)

        return self.cloud.actions.start(
            "attach_volume", [(volume["id"], "volume"), (server["id"], "server")], then=attached, locks=True
        )
