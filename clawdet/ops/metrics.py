"""Worker-side metrics kept in the database.

Workers are separate processes, often on other machines, so Prometheus' in-process registry (or
its multiprocess mode, which needs a shared directory) cannot see them. Instead each worker adds
to counter rows in the database, in the transaction of what it counts, and `/metrics` reads
them at scrape time. Histograms are stored the Prometheus way: cumulative bucket counters plus
a sum and a count.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from clawdet.instances.lifecycle import DesiredState, InstanceStatus
from db.engine import Database
from db.models import Instance, OpsCounter

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def label_text(labels: dict[str, str] | None) -> str:
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels or {}))


def parse_labels(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split(",") if pair)


def _insert(session: Session):
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(
        OpsCounter
    )


def _add_rows(session: Session, rows: list[dict]) -> None:
    if not rows:
        return
    statement = _insert(session).values(rows)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["name", "labels"], set_={"value": OpsCounter.value + statement.excluded.value}
        )
    )


def increment(session: Session, name: str, labels: dict[str, str] | None = None, amount: float = 1.0) -> None:
    _add_rows(session, [{"name": name, "labels": label_text(labels), "value": amount}])


def observe(
    session: Session,
    name: str,
    value: float,
    labels: dict[str, str] | None = None,
    buckets: tuple[float, ...] = DURATION_BUCKETS,
) -> None:
    """One histogram observation: +1 in every bucket at or above `value` (every bucket row
    exists, so the exposition is complete), plus sum and count."""
    base = dict(labels or {})
    rows = [
        {
            "name": f"{name}_bucket",
            "labels": label_text({**base, "le": _le(bound)}),
            "value": 1.0 if value <= bound else 0.0,
        }
        for bound in buckets
    ]
    rows.append({"name": f"{name}_bucket", "labels": label_text({**base, "le": "+Inf"}), "value": 1.0})
    rows.append({"name": f"{name}_sum", "labels": label_text(base), "value": float(value)})
    rows.append({"name": f"{name}_count", "labels": label_text(base), "value": 1.0})
    _add_rows(session, rows)


def mark_time(session: Session, name: str, at: float, labels: dict[str, str] | None = None) -> None:
    """The Unix time of the latest `name`, kept at its maximum (so it only grows, as a counter
    must): `time() - value` is how long ago it was."""
    statement = _insert(session).values(name=name, labels=label_text(labels), value=at)
    newer = case(
        (statement.excluded.value > OpsCounter.value, statement.excluded.value), else_=OpsCounter.value
    )
    session.execute(statement.on_conflict_do_update(index_elements=["name", "labels"], set_={"value": newer}))


def _le(bound: float) -> str:
    return repr(float(bound))


def all_counters(session: Session) -> list[OpsCounter]:
    return list(session.scalars(select(OpsCounter).order_by(OpsCounter.name, OpsCounter.labels)))


# -- what the worker records ------------------------------------------------------------------


def operation_kind(instance: Instance) -> str:
    if instance.desired_state == DesiredState.DESTROYED.value:
        return "destroy"
    return instance.requested_action or ("create" if instance.ready_at is None else "update")


def outcome_of(instance: Instance, attempts_before: int) -> str:
    if instance.status in (
        InstanceStatus.READY.value,
        InstanceStatus.PAUSED.value,
        InstanceStatus.DESTROYED.value,
    ):
        return "success"
    if instance.status == InstanceStatus.FAILED.value:
        return "failed"
    return "retry" if instance.attempts > attempts_before else "interrupted"


@contextmanager
def timed_operation(database: Database, instance_id: str) -> Iterator[None]:
    """Around one reconcile operation: its duration and outcome, and drift repaired when the
    operation was a repair or reboot the fleet scan asked for."""
    with database.sessions() as session:
        instance = session.get(Instance, instance_id)
        kind, attempts = operation_kind(instance), instance.attempts
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        with database.session() as session:
            instance = session.get(Instance, instance_id)
            outcome = outcome_of(instance, attempts)
            increment(session, "clawdet_reconcile_total", {"kind": kind, "outcome": outcome})
            observe(session, "clawdet_reconcile_duration_seconds", seconds, {"kind": kind})
            if kind in ("repair", "reboot") and outcome == "success":
                increment(session, "clawdet_drift_repaired_total", {"action": kind})


def observe_scan(database: Database, report) -> None:
    """After a fleet scan: drift found by action, and every health probe's latency."""
    with database.session() as session:
        increment(session, "clawdet_fleet_scans_total")
        from clawdet.instances.leases import database_now  # one clock for every host

        mark_time(session, "clawdet_fleet_scan_finished_timestamp_seconds", database_now(session).timestamp())
        for finding in report.findings:
            if finding.action:
                increment(session, "clawdet_drift_found_total", {"action": finding.action})
            if finding.probe is not None:
                observe(
                    session,
                    "clawdet_health_probe_seconds",
                    finding.probe.seconds,
                    {"ok": str(finding.probe.ok).lower()},
                    buckets=LATENCY_BUCKETS,
                )
