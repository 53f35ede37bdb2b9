"""One reconcile operation, observed: its log lines carry the request id of the web request that
asked for it (or a fresh operation id for work the fleet scan found), and its duration and
outcome go to the worker-side metrics.

The reconciler wraps each claimed operation in `operation(...)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from clawdet.logs import bound, new_request_id
from clawdet.ops import metrics as ops_metrics
from db.engine import Database
from db.models import Instance, OperationRequest


def request_id_for(database: Database, instance_id: str) -> tuple[str | None, str | None]:
    """(request id, stack name) of the instance's pending operation."""
    with database.sessions() as session:
        instance = session.get(Instance, instance_id)
        asked = session.get(OperationRequest, instance_id)
        return (asked.request_id if asked else None), (instance.stack_name if instance else None)


def _settled(database: Database, instance_id: str) -> None:
    """Once the asked-for work is done, later work (a drift repair) is nobody's request."""
    with database.session() as session:
        instance = session.get(Instance, instance_id)
        if instance.observed_generation >= instance.generation and instance.requested_action is None:
            asked = session.get(OperationRequest, instance_id)
            if asked is not None:
                session.delete(asked)


@contextmanager
def operation(database: Database, instance_id: str) -> Iterator[str]:
    request_id, stack = request_id_for(database, instance_id)
    request_id = request_id or f"op-{new_request_id()}"
    with bound(request_id=request_id, instance=stack):
        try:
            with ops_metrics.timed_operation(database, instance_id):
                yield request_id
        finally:
            _settled(database, instance_id)
