"""Hetzner Cloud images: the catalogue's system and app images, and snapshots made from servers.

`POST /servers/{id}/actions/create_image` (``description``, ``type`` ``snapshot`` or ``backup``,
``labels``) answers 201 with ``image`` (``status: creating`` until its ``create_image`` action
finishes, then ``available``) and ``action``, as the real API does. `GET /images` filters by
``type``, ``status``, ``architecture``, ``name``, ``label_selector`` and ``bound_to``, sorts and
paginates; `PUT /images/{id}` changes ``description``, ``labels`` and ``type`` (snapshot only);
`DELETE /images/{id}` deletes a snapshot (the catalogue's images are not ours to delete).

A snapshot keeps what its server's disk held (``contents``: packages and container images,
sandbox/clock.py), so a server created from it skips that work. The sandbox keeps it beside the
image (never in the API view).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import hetzner_catalog as catalog
from .hetzner_common import (
    NOT_STRING,
    FieldErrors,
    HcloudError,
    label_filter,
    locked,
    not_found,
    paginate,
    path_id,
    read_body,
    sort_items,
)
from .http_common import json_response
from .label_selector import label_errors
from .state import hetzner_time

if TYPE_CHECKING:
    from .hetzner import HetznerCloud

SNAPSHOT_TYPES = ("snapshot", "backup")
# What Hetzner's app images already have installed (the rest start from a bare Ubuntu).
APP_IMAGE_PACKAGES = {"docker-ce": ("docker-ce", "docker-ce-cli", "containerd.io", "docker-compose-plugin")}


class ImageService:
    def __init__(self, cloud: HetznerCloud) -> None:
        self.cloud = cloud
        self.store = cloud.store
        self.snapshots: dict[str, dict[str, Any]] = cloud.store.section("images")

    def restore(self) -> None:
        """After a restart: a snapshot whose action was running is made (as its action is)."""
        for snapshot in self.snapshots.values():
            if snapshot["status"] == "creating":
                snapshot["status"] = "available"
        self.store.mark_dirty()

    # -- lookups ------------------------------------------------------------------------
    def all(self) -> list[dict[str, Any]]:
        return [*catalog.IMAGES, *(self.view(s) for s in self.snapshots.values())]

    def view(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in snapshot.items() if key != "contents"}

    def find(self, id_or_name: object, architecture: str) -> dict[str, Any] | None:
        """An image by ID (any type), or a catalogue image by name for the architecture."""
        found = catalog.image_for(id_or_name, architecture)
        if found is not None:
            return found
        if isinstance(id_or_name, bool) or not isinstance(id_or_name, (int, str)):
            return None
        snapshot = self.snapshots.get(str(id_or_name))
        return self.view(snapshot) if snapshot is not None else None

    def contents_of(self, image: dict[str, Any]) -> dict[str, list[str]]:
        """What a new disk from ``image`` holds (its packages and pulled container images)."""
        snapshot = self.snapshots.get(str(image["id"]))
        if snapshot is not None:
            return dict(snapshot["contents"])
        return {"packages": list(APP_IMAGE_PACKAGES.get(image.get("name") or "", ())), "images": []}

    def is_snapshot(self, image_id: int) -> bool:
        return str(image_id) in self.snapshots

    # -- HTTP handlers ------------------------------------------------------------------
    async def list(self, request: web.Request) -> web.Response:
        query = request.query
        images = self.all()
        for field in ("name",):
            if field in query:
                images = [i for i in images if i[field] == query[field]]
        for field in ("architecture", "type", "status"):
            if field in query:
                images = [i for i in images if i[field] in query.getall(field)]
        if "bound_to" in query:
            bound = set(query.getall("bound_to"))
            images = [i for i in images if str(i["bound_to"]) in bound]
        matches = label_filter(request)
        if matches is not None:
            images = [i for i in images if matches(i["labels"])]
        images = sort_items(request, sorted(images, key=lambda i: i["id"]), ("id", "name", "created"))
        return json_response(paginate(request, images, "images"))

    async def get_one(self, request: web.Request) -> web.Response:
        image_id = path_id(request, "image")
        found = next((i for i in self.all() if i["id"] == image_id), None)
        if found is None:
            raise not_found("image", image_id)
        return json_response({"image": found})

    def _snapshot(self, request: web.Request) -> dict[str, Any]:
        image_id = path_id(request, "image")
        snapshot = self.snapshots.get(str(image_id))
        if snapshot is None:
            if any(i["id"] == image_id for i in catalog.IMAGES):
                raise HcloudError(403, "forbidden", "system and app images cannot be changed")
            raise not_found("image", image_id)
        return snapshot

    async def update(self, request: web.Request) -> web.Response:
        snapshot = self._snapshot(request)
        body = await read_body(request)
        errors = FieldErrors()
        description = errors.optional(body, "description", str, NOT_STRING)
        image_type = errors.optional(body, "type", str, NOT_STRING)
        if image_type is not None and image_type != "snapshot":
            errors.add("type", "Must be one of: snapshot.")
        labels = body.get("labels")
        if labels is not None:
            for message in label_errors(labels):
                errors.add("labels", message)
        errors.raise_if_any()
        if description is not None:
            snapshot["description"] = description
        if image_type is not None:
            snapshot["type"] = image_type
        if labels is not None:
            snapshot["labels"] = dict(labels)
        self.store.mark_dirty()
        return json_response({"image": self.view(snapshot)})

    async def delete(self, request: web.Request) -> web.Response:
        snapshot = self._snapshot(request)
        if snapshot["protection"]["delete"]:
            raise HcloudError(403, "protected", "image deletion is protected")
        del self.snapshots[str(snapshot["id"])]
        self.store.mark_dirty()
        return web.Response(status=204)

    # -- the server action ---------------------------------------------------------------
    def create_image(self, server: dict[str, Any], body: dict[str, Any]) -> web.Response:
        errors = FieldErrors()
        description = errors.optional(body, "description", str, NOT_STRING)
        image_type = errors.optional(body, "type", str, NOT_STRING) or "snapshot"
        if image_type not in SNAPSHOT_TYPES:
            errors.add("type", "Must be one of: snapshot, backup.")
        labels = body.get("labels") or {}
        for message in label_errors(labels):
            errors.add("labels", message)
        errors.raise_if_any()
        if self.cloud.actions.is_locked("server", server["id"]):
            raise locked("server")
        server_type = catalog.find_by_id_or_name(catalog.SERVER_TYPES, server["server_type"])
        source = self.find(server["image_id"], server_type["architecture"]) or {}
        image_id = self.store.next_id("image", start=300000000)
        snapshot = {
            "id": image_id,
            "type": image_type,
            "status": "creating",
            "name": None,
            "description": description or f"{server['name']}-{hetzner_time()}",
            "image_size": None,
            "disk_size": server.get("disk") or server_type["disk"],
            "created": hetzner_time(),
            "created_from": {"id": server["id"], "name": server["name"]},
            "bound_to": server["id"] if image_type == "backup" else None,
            "os_flavor": source.get("os_flavor", "ubuntu"),
            "os_version": source.get("os_version"),
            "rapid_deploy": False,
            "protection": {"delete": False},
            "deprecated": None,
            "deleted": None,
            "labels": dict(labels),
            "architecture": server_type["architecture"],
            "contents": self.cloud.machines.machine(server["id"]).contents().record(),
        }
        self.snapshots[str(image_id)] = snapshot
        self.store.mark_dirty()

        def made() -> None:
            if str(image_id) in self.snapshots:
                snapshot["status"] = "available"
                snapshot["image_size"] = round(snapshot["disk_size"] * 0.08, 2)
                self.store.mark_dirty()

        action = self.cloud.actions.start(
            "create_image",
            [(server["id"], "server"), (image_id, "image")],
            duration=self.cloud.clock.snapshot_seconds(),
            then=made,
            locks=True,
        )
        return json_response({"image": self.view(snapshot), "action": action}, status=201)
