"""Faults on demand: latency, error rates, 429s and "fail the next N calls", per route.

A rule matches on service name (``hetzner``, ``cloudflare``, ``x``, ``llm``, an extra LLM
upstream's name, ``gateway`` for every fake server's gateway or ``gateway:<server id>`` for
one), HTTP method and a path pattern (shell-style glob such as ``/v1/servers*``, or a regular
expression when it starts with ``^``). A matching rule adds its latency, then fails the call
when it still has ``fail_next`` calls to fail, by ``error_rate`` chance, or always when it names
only a status. Each service renders the failure in its own error format; this module decides.
Randomness comes from one seeded generator, so a run with the same seed and the same request
order fails the same calls.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import random
import re
import threading
from typing import Any


@dataclasses.dataclass
class FaultRule:
    id: int
    service: str | None = None
    method: str | None = None
    path: str | None = None
    error_rate: float = 0.0
    status: int = 500
    latency: float = 0.0
    retry_after: float | None = None
    fail_next: int = 0
    hits: int = 0
    failures: int = 0

    def matches(self, service: str, method: str, path: str) -> bool:
        if self.service is not None and self.service != service:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is not None:
            if self.path.startswith("^"):
                return re.search(self.path, path) is not None
            return fnmatch.fnmatchcase(path, self.path)
        return True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FaultDecision:
    latency: float = 0.0
    fail_status: int | None = None
    retry_after: float | None = None
    rule_id: int | None = None


NO_FAULT = FaultDecision()


class FaultInjector:
    """Thread-safe: tests add rules from their thread while the loop consults them."""

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(
        self,
        *,
        service: str | None = None,
        method: str | None = None,
        path: str | None = None,
        error_rate: float = 0.0,
        status: int | None = None,
        latency: float = 0.0,
        retry_after: float | None = None,
        fail_next: int = 0,
    ) -> FaultRule:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if fail_next < 0 or latency < 0:
            raise ValueError("fail_next and latency must not be negative")
        if path is not None and path.startswith("^"):
            re.compile(path)
        if (status is not None or retry_after is not None) and not error_rate and not fail_next:
            error_rate = 1.0  # a status alone means: fail every matching call
        if status is None:
            status = 429 if retry_after is not None else 500
        if status == 429 and retry_after is None:
            retry_after = 1.0
        rule = FaultRule(
            id=next(self._ids),
            service=service,
            method=method.upper() if method else None,
            path=path,
            error_rate=error_rate,
            status=int(status),
            latency=float(latency),
            retry_after=retry_after,
            fail_next=int(fail_next),
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [rule for rule in self._rules if rule.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_dict() for rule in self._rules]

    def decide(self, service: str, method: str, path: str) -> FaultDecision:
        with self._lock:
            latency = 0.0
            for rule in self._rules:
                if not rule.matches(service, method, path):
                    continue
                rule.hits += 1
                latency += rule.latency
                failing = False
                if rule.fail_next > 0:
                    rule.fail_next -= 1
                    failing = True
                elif rule.error_rate > 0 and self._random.random() < rule.error_rate:
                    failing = True
                if failing:
                    rule.failures += 1
                    return FaultDecision(latency, rule.status, rule.retry_after, rule.id)
            if latency:
                return FaultDecision(latency=latency)
            return NO_FAULT
