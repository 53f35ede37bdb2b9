"""One reconcile operation, observed: its log lines carry the request id of the web request that
asked for it (or a fresh operation id for work the fleet scan found), and its duration and
outcome go to the worker-side metrics.

The worker wraps each claimed operation in `operation(...)`; `ObservedReconciler` is the
reconciler with that wrapping, for the worker (and tests) to use.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from db.engine import Database
from db.logs import bound, new_request_id
from db.models import Instance, OperationRequest
from provisioner import leases, ops_metrics
from provisioner.reconciler import Reconciler


def request_id_for(database: Database, instance_id: str) -> tuple[str | None, str | None]:
    """(request id, stack name) of the instance's current operation."""
    with database.sessions() as session:
        instance = session.get(Instance, instance_id)
        asked = session.get(OperationRequest, instance_id)
        if asked is not None and asked.generation not in (None, instance.generation):
            asked = None if instance.requested_action is None else asked
        return (asked.request_id if asked else None), (instance.stack_name if instance else None)


@contextmanager
def operation(database: Database, instance_id: str) -> Iterator[str]:
    request_id, stack = request_id_for(database, instance_id)
    request_id = request_id or f"op-{new_request_id()}"
    with bound(request_id=request_id, instance=stack):
        with ops_metrics.timed_operation(database, instance_id):
            yield request_id


class ObservedReconciler(Reconciler):
    def work(self, claim: leases.Claim) -> None:
        with operation(self.database, claim.instance_id):
            super().work(claim)
