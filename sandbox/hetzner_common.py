"""Hetzner Cloud API plumbing: error envelope, input checks, pagination, sorting, actions."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from .clock import Clock
from .http_common import json_response
from .label_selector import InvalidSelector, label_errors, parse_selector
from .state import StateStore, hetzner_time

MISSING = "Missing data for required field."
NOT_STRING = "Not a valid string."
NOT_INTEGER = "Not a valid integer."
NOT_BOOLEAN = "Not a valid boolean."
NOT_LIST = "Not a valid list."
NOT_MAPPING = "Not a valid mapping type."

_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class HcloudError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details if details is not None else {}

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message, "details": self.details}}
        return json_response(body, status=self.status, headers=headers)


def invalid_input(fields: dict[str, list[str]]) -> HcloudError:
    names = ", ".join(f"'{name}'" for name in fields)
    return HcloudError(
        400,
        "invalid_input",
        f"invalid input in field{'s' if len(fields) > 1 else ''} {names}",
        {"fields": [{"name": name, "messages": messages} for name, messages in fields.items()]},
    )


def not_found(kind: str, identifier: object) -> HcloudError:
    return HcloudError(404, "not_found", f"{kind} with ID '{identifier}' not found")


def locked(kind: str) -> HcloudError:
    return HcloudError(423, "locked", f"{kind} is locked")


def is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_hostname(name: str) -> bool:
    if len(name) > 253 or name.endswith("."):
        return False
    return all(_HOSTNAME_LABEL.match(label) for label in name.split("."))


def path_id(request: web.Request, kind: str, key: str = "id") -> int:
    raw = request.match_info[key]
    if not raw.isdigit():
        raise not_found(kind, raw)
    return int(raw)


async def read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HcloudError(400, "json_error", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HcloudError(400, "json_error", "request body must be a JSON object")
    return body


class FieldErrors:
    """Collects per-field messages so one response lists every invalid field."""

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.fields.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self.fields:
            raise invalid_input(self.fields)

    def required_string(self, body: dict[str, Any], name: str) -> str | None:
        if name not in body or body[name] is None:
            self.add(name, MISSING)
            return None
        if not isinstance(body[name], str):
            self.add(name, NOT_STRING)
            return None
        return body[name]

    def optional(self, body: dict[str, Any], name: str, kind: type, message: str) -> Any:
        value = body.get(name)
        if value is None:
            return None
        if kind is int and not is_integer(value):
            self.add(name, message)
            return None
        if kind is not int and (
            not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))
        ):
            self.add(name, message)
            return None
        return value


def list_response(
    request: web.Request,
    items: Iterable[dict[str, Any]],
    key: str,
    view: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    by_status: bool = False,
) -> web.Response:
    """`GET /<key>`: filtered by `name`, `label_selector` (and `status`), sorted, paginated,
    each item in its API view."""
    chosen = sorted(items, key=lambda item: item["id"])
    if "name" in request.query:
        chosen = [item for item in chosen if item["name"] == request.query["name"]]
    statuses = request.query.getall("status", []) if by_status else []
    if statuses:
        chosen = [item for item in chosen if item["status"] in statuses]
    matches = label_filter(request)
    if matches is not None:
        chosen = [item for item in chosen if matches(item["labels"])]
    page = paginate(request, sort_items(request, chosen, ("id", "name", "created")), key)
    page[key] = [view(item) for item in page[key]]
    return json_response(page)


def rename_and_relabel(
    kind: str,
    item: dict[str, Any],
    siblings: Iterable[dict[str, Any]],
    body: dict[str, Any],
    check_name: Callable[[FieldErrors, str], None] | None = None,
) -> None:
    """`PUT /<kind>s/{id}`: a new name (unique among `siblings`) and/or new labels, validated
    like the real API; every invalid field is listed before anything changes."""
    errors = FieldErrors()
    name = errors.optional(body, "name", str, NOT_STRING)
    if name is not None and check_name is not None:
        check_name(errors, name)
    labels = body.get("labels")
    if labels is not None:
        for message in label_errors(labels):
            errors.add("labels", message)
    errors.raise_if_any()
    if name is not None and name != item["name"]:
        if any(other["name"] == name for other in siblings):
            raise HcloudError(
                409, "uniqueness_error", f"{kind} name is already used", {"fields": [{"name": "name"}]}
            )
        item["name"] = name
    if labels is not None:
        item["labels"] = dict(labels)


# -- listing --------------------------------------------------------------------------------
def label_filter(request: web.Request) -> Callable[[dict[str, str]], bool] | None:
    selector = request.query.get("label_selector")
    if selector is None:
        return None
    try:
        return parse_selector(selector)
    except InvalidSelector as exc:
        raise invalid_input({"label_selector": [f"invalid label_selector: {exc}"]}) from None


def sort_items(
    request: web.Request, items: list[dict[str, Any]], allowed: Iterable[str]
) -> list[dict[str, Any]]:
    allowed = set(allowed)
    orders = request.query.getall("sort", [])
    for order in reversed(orders):
        field, _, direction = order.partition(":")
        if field not in allowed or direction not in ("", "asc", "desc"):
            raise invalid_input({"sort": [f"invalid sort field or direction: {order}"]})
        items = sorted(
            items, key=lambda item: (item.get(field) is None, item.get(field)), reverse=direction == "desc"
        )
    return items


def paginate(request: web.Request, items: list[Any], key: str) -> dict[str, Any]:
    errors = FieldErrors()
    page = per_page = 0
    try:
        page = int(request.query.get("page", "1"))
        if page < 1:
            errors.add("page", "Must be greater than or equal to 1.")
    except ValueError:
        errors.add("page", NOT_INTEGER)
    try:
        per_page = int(request.query.get("per_page", "25"))
        if not 1 <= per_page <= 50:
            errors.add("per_page", "Must be greater than or equal to 1 and less than or equal to 50.")
    except ValueError:
        errors.add("per_page", NOT_INTEGER)
    errors.raise_if_any()
    total = len(items)
    last_page = max(1, (total + per_page - 1) // per_page)
    start = (page - 1) * per_page
    return {
        key: items[start : start + per_page],
        "meta": {
            "pagination": {
                "page": page,
                "per_page": per_page,
                "previous_page": page - 1 if page > 1 else None,
                "next_page": page + 1 if page < last_page else None,
                "last_page": last_page,
                "total_entries": total,
            }
        },
    }


# -- actions --------------------------------------------------------------------------------
class ActionBook:
    """Actions are ``running`` for ``duration`` profile seconds (the clock's ``action`` unless
    given), then ``success`` (or ``error``)."""

    KEEP = 50000

    def __init__(self, store: StateStore, clock: Clock) -> None:
        self.store = store
        self.actions: dict[str, dict[str, Any]] = store.section("actions")
        self.clock = clock
        self._timers: set[asyncio.TimerHandle] = set()
        self._locks: dict[tuple[str, int], int] = {}

    def start(
        self,
        command: str,
        resources: list[tuple[int, str]],
        *,
        duration: float | None = None,
        then: Callable[[], None] | None = None,
        locks: bool = False,
    ) -> dict[str, Any]:
        action_id = self.store.next_id("action")
        action = {
            "id": action_id,
            "command": command,
            "status": "running",
            "progress": 0,
            "started": hetzner_time(),
            "finished": None,
            "error": None,
            "resources": [{"id": rid, "type": rtype} for rid, rtype in resources],
        }
        self.actions[str(action_id)] = action
        if locks:
            for rid, rtype in resources:
                self._locks[(rtype, rid)] = action_id
        self._prune()
        self.store.mark_dirty()
        delay = self.clock.wall(self.clock.action if duration is None else duration)
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def finish() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self.finish(action, then)

        handle = loop.call_later(delay, finish)
        self._timers.add(handle)
        return action

    def finish(
        self,
        action: dict[str, Any],
        then: Callable[[], None] | None = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        if action["status"] != "running":
            return
        action["status"] = "error" if error else "success"
        action["progress"] = 100
        action["finished"] = hetzner_time()
        if error:
            action["error"] = {"code": error[0], "message": error[1]}
        for resource in action["resources"]:
            key = (resource["type"], resource["id"])
            if self._locks.get(key) == action["id"]:
                del self._locks[key]
        self.store.mark_dirty()
        if then is not None:
            then()

    def is_locked(self, resource_type: str, resource_id: int) -> bool:
        return (resource_type, resource_id) in self._locks

    def finish_all_running(self) -> None:
        """On load: whatever was running when the sandbox stopped has completed."""
        for action in self.actions.values():
            if action["status"] == "running":
                action["status"] = "success"
                action["progress"] = 100
                action["finished"] = action["finished"] or hetzner_time()
        self.store.mark_dirty()

    def cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def for_resource(self, resource_type: str, resource_id: int | None = None) -> list[dict[str, Any]]:
        return [
            action
            for action in self.actions.values()
            if any(
                r["type"] == resource_type and (resource_id is None or r["id"] == resource_id)
                for r in action["resources"]
            )
        ]

    def _prune(self) -> None:
        if len(self.actions) <= self.KEEP:
            return
        finished = sorted((int(key) for key, a in self.actions.items() if a["status"] != "running"))
        for key in finished[: len(self.actions) - self.KEEP]:
            del self.actions[str(key)]


ACTION_SORT_FIELDS = ("id", "command", "status", "progress", "started", "finished")


def list_actions(request: web.Request, actions: list[dict[str, Any]]) -> web.Response:
    ids = request.query.getall("id", [])
    if ids:
        try:
            wanted = {int(value) for value in ids}
        except ValueError:
            raise invalid_input({"id": [NOT_INTEGER]}) from None
        actions = [action for action in actions if action["id"] in wanted]
    statuses = request.query.getall("status", [])
    if statuses:
        actions = [action for action in actions if action["status"] in statuses]
    actions = sort_items(request, sorted(actions, key=lambda a: a["id"]), ACTION_SORT_FIELDS)
    return json_response(paginate(request, actions, "actions"))
