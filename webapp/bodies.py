"""The request's JSON body, checked by the one shape check (clawdet/bodies.py)."""

from __future__ import annotations

from typing import Any

from flask import request

from clawdet.bodies import checked


def json_body(**fields: type) -> dict[str, Any]:
    return checked(request.get_json(silent=True), **fields)
