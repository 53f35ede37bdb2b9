"""Request bodies: one check of a JSON body's shape for every JSON endpoint (the web app's and
the proxy's), so a wrong type is a 400 that names the field, never a 500 from deep inside."""

from __future__ import annotations

from typing import Any

from clawdet.errors import UserFacingError

TYPE_WORDS = {str: "a string", bool: "true or false", int: "a number", dict: "an object", list: "a list"}


def checked(body: Any, **fields: type) -> dict[str, Any]:
    """`body` if it is a JSON object whose named fields, when present and not null, are of their
    type (bool is not taken for int). Other fields pass through untouched."""
    if not isinstance(body, dict):
        raise UserFacingError(
            "invalid_json",
            "The request body must be a JSON object.",
            "Send Content-Type: application/json with an object body.",
        )
    for name, kind in fields.items():
        value = body.get(name)
        wrong_bool = kind is int and isinstance(value, bool)
        if value is not None and (not isinstance(value, kind) or wrong_bool):
            raise UserFacingError(
                "invalid_field",
                f"The field {name!r} must be {TYPE_WORDS.get(kind, kind.__name__)}.",
                f"Send {name} as {TYPE_WORDS.get(kind, kind.__name__)}, or leave it out.",
                field=name,
            )
    return body
