"""Hardening (issue 16, items 2 and 6): one engine per stack even when a worker is cut off from
the database. The cut-off worker stops its own engine before its lease can end; the next takes
over only a full lease after that end, clears the lock with the engine's own `pulumi cancel`,
and finishes: one server, nothing orphaned (real engine, stand-in plugins, sandbox)."""

import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from clawdet.instances import leases
from clawdet.reconciler.reconciler import Reconciler
from db.models import InstanceEvent
from tests.fixtures.provisioning import FAST, instance, new_instance, records_named, servers_named

pytestmark = [pytest.mark.engine, pytest.mark.postgres]

LEASE = timedelta(seconds=4)


def test_a_worker_cut_off_from_the_database_stops_its_engine_and_another_takes_over_safely(
    prov_settings, prov_db, cloud_sandbox, monkeypatch
):
    config = replace(FAST, lease=LEASE)
    instance_id = new_instance(prov_db, prov_settings, "fenced")

    def outage(*args, **kwargs):
        raise OperationalError("UPDATE instances", {}, ConnectionRefusedError("the database is unreachable"))

    with monkeypatch.context() as patch:  # renewals and the release fail, as in an outage
        patch.setattr(leases, "renew", outage)
        patch.setattr(leases, "release", outage)
        cut_off = Reconciler(prov_settings, prov_db, config=config, owner="cut-off")
        started = time.monotonic()
        assert cut_off.run_once()
        stopped_after = time.monotonic() - started
    assert cut_off.lease_lost.is_set()
    assert stopped_after < LEASE.total_seconds()  # its engine had stopped before its lease ended
    row = instance(prov_db, instance_id)
    assert row.lease_owner == "cut-off" and row.status not in ("ready", "failed")  # it wrote no outcome

    taker = Reconciler(prov_settings, prov_db, config=config, owner="taker")
    with prov_db.sessions() as session:
        expired_at = row.lease_expires_at
        assert leases.database_now(session) < expired_at + LEASE
    assert not taker.run_once()  # not before a full lease after the dead one's end
    deadline = time.monotonic() + 3 * LEASE.total_seconds()
    while not taker.run_once():
        assert time.monotonic() < deadline, "the lease was never taken over"
        time.sleep(0.2)
    taker.drain()
    done = instance(prov_db, instance_id)
    assert done.status == "ready", done.status_message
    assert len(servers_named(cloud_sandbox, "fenced")) == 1
    assert len([r for r in records_named(cloud_sandbox, "fenced.clawdet.test") if r["type"] == "A"]) == 1
    with prov_db.sessions() as session:
        steps = session.scalars(select(InstanceEvent.step).where(InstanceEvent.instance_id == instance_id))
        assert "recovery" in list(steps)  # the taker knew it picked up a stopped worker's stack


def test_one_failed_renewal_is_retried_long_before_the_fence(
    prov_settings, prov_db, cloud_sandbox, monkeypatch
):
    """A database blip (a failover, a dropped connection) costs a retry, not the operation."""
    renewals = []

    def flaky(*args, **kwargs):
        renewals.append(time.monotonic())
        if len(renewals) == 1:
            raise OperationalError("UPDATE instances", {}, ConnectionResetError("connection reset"))
        return real_renew(*args, **kwargs)

    real_renew = leases.renew
    monkeypatch.setattr(leases, "renew", flaky)
    instance_id = new_instance(prov_db, prov_settings, "blip")
    reconciler = Reconciler(prov_settings, prov_db, config=replace(FAST, lease=LEASE))
    assert reconciler.drain() == 1
    assert len(renewals) >= 2 and not reconciler.lease_lost.is_set()
    done = instance(prov_db, instance_id)
    assert done.status == "ready", done.status_message
