"""Hetzner Cloud label selectors and label validation.

Selector grammar (comma = AND): ``k``, ``!k``, ``k=v``, ``k==v``, ``k!=v``,
``k in (a,b)``, ``k notin (a,b)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Labels = dict[str, str]
Predicate = Callable[[Labels], bool]

_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?"
_KEY_RE = re.compile(rf"^({_PREFIX}/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")
_SET_RE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)\s*$")
_COMPARE_RE = re.compile(r"^\s*([^\s!=(),]+)\s*(==|!=|=)\s*([^\s!=(),]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*$")


class InvalidSelector(ValueError):
    pass


def _split_top_level(selector: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise InvalidSelector("unbalanced parentheses")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise InvalidSelector("unbalanced parentheses")
    parts.append("".join(current))
    return parts


def _term(expression: str) -> Predicate:
    if match := _SET_RE.match(expression):
        key, operator, raw_values = match.groups()
        values = {value.strip() for value in raw_values.split(",") if value.strip()}
        if not values:
            raise InvalidSelector(f"empty value set in {expression!r}")
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _COMPARE_RE.match(expression):
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_RE.match(expression):
        negate, key = match.groups()
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise InvalidSelector(f"cannot parse {expression!r}")


def parse_selector(selector: str) -> Predicate:
    if not selector.strip():
        raise InvalidSelector("empty label selector")
    terms = [_term(part) for part in _split_top_level(selector)]
    return lambda labels: all(term(labels) for term in terms)


def label_errors(labels: object) -> list[str]:
    """Messages for invalid labels, in Hetzner's wording; empty when valid."""
    if not isinstance(labels, dict):
        return ["Not a valid mapping type."]
    messages = []
    for key, value in labels.items():
        if not isinstance(value, str):
            messages.append(f"label value of {key!r} must be a string")
            continue
        if not isinstance(key, str) or not _KEY_RE.match(key) or len(key) > 317:
            messages.append(f"label key {key!r} is invalid")
        elif key.startswith("hetzner.cloud/"):
            messages.append(f"label key {key!r} uses the reserved prefix hetzner.cloud/")
        if not _VALUE_RE.match(value):
            messages.append(f"label value {value!r} of key {key!r} is invalid")
    return messages
