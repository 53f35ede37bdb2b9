"""What a proxied request cost: the usage the upstream reported, read on the way past.

Streams ask the upstream for a final usage chunk (`stream_options.include_usage`); the proxy
reads the stream to its end even when the client has gone, so what was generated is charged.
An upstream that reports no usage is charged an estimate (the prompt's ceiling, a token per
streamed chunk or four bytes per token of a whole answer) and logged: a request is never free
because its usage went missing.
"""

from __future__ import annotations

import json
import logging

from clawdet.llm.recorder import UsageEntry

log = logging.getLogger(__name__)

BYTES_PER_TOKEN = 4


def usage_of(content: bytes) -> dict | None:
    try:
        usage = json.loads(content).get("usage")
    except (ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


class StreamTap:
    """Reads server-sent chunks as they pass: the usage chunk, and the answer's size meanwhile."""

    def __init__(self) -> None:
        self.usage: dict | None = None
        self.chunks = 0
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk
        cut = data.rfind(b"\n") + 1
        complete, self._tail = data[:cut], data[cut:]
        self.chunks += complete.count(b"data: {")
        if b'"prompt_tokens"' in complete:  # the usage chunk: rarely, so split only then
            for line in complete.split(b"\n"):
                if line.startswith(b"data: ") and b'"prompt_tokens"' in line:
                    self.usage = usage_of(line[6:]) or self.usage


def estimate(content: bytes) -> int:
    return len(content) // BYTES_PER_TOKEN


def entry(ticket, model: str, usage: dict | None, answer_tokens: int) -> UsageEntry:
    """The usage row of one request (a clawdet.llm.ledger.Ticket); its tokens leave the lease."""
    caller = ticket.caller
    if usage is None:
        log.warning(
            "llm upstream sent no usage for instance %s model %s; charging an estimate",
            caller.instance_id,
            model,
        )
        usage = {"prompt_tokens": ticket.prompt_ceiling, "completion_tokens": answer_tokens}
    return UsageEntry(
        user_id=caller.user_id,
        instance_id=caller.instance_id,
        payment_method=caller.payment_method,
        paid=caller.paid,
        model=model,
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        lease_id=ticket.lease.id,
    )


def _count(value) -> int:
    return value if isinstance(value, int) and value > 0 else 0
