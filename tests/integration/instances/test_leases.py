"""One stack, one worker: leases on SQLite and PostgreSQL."""

import threading
from datetime import timedelta

from sqlalchemy import update

from clawdet.instances import leases
from clawdet.instances.requests import request_instance
from db.models import BackupRequest, Instance, PeriodicRun, User, utcnow

LEASE = timedelta(minutes=1)


def make_instances(database, n):
    ids = []
    with database.session() as session:
        for i in range(n):
            user = User(email=f"u{i}@example.com", name=f"u{i}", terms_accepted_at=utcnow())
            user.mark_free_beta()
            session.add(user)
            session.flush()
            ids.append(request_instance(session, user, subdomain=f"inst{i}").id)
    return ids


def test_two_workers_never_hold_the_same_instance(database):
    ids = make_instances(database, 12)
    held: dict[str, list[str]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def worker(owner):
        barrier.wait()
        with database.sessions() as session:
            while (claim := leases.claim_next(session, owner, LEASE)) is not None:
                held[owner].append(claim.instance_id)

    threads = [threading.Thread(target=worker, args=(o,)) for o in held]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert set(held["a"]).isdisjoint(held["b"])
    assert sorted(held["a"] + held["b"]) == sorted(ids)


def test_expired_lease_is_taken_over_and_renewal_needs_ownership(database):
    [instance_id] = make_instances(database, 1)
    with database.sessions() as session:
        first = leases.claim_next(session, "dead-worker", LEASE)
        assert first.instance_id == instance_id and first.taken_over_from is None
        assert leases.claim_next(session, "other", LEASE) is None  # held
        session.execute(update(Instance).values(lease_expires_at=utcnow() - timedelta(seconds=5)))
        session.commit()
        # Expired, but its worker may be cut off and still stopping its engine: a lease more.
        assert leases.claim_next(session, "other", LEASE) is None
        session.execute(update(Instance).values(lease_expires_at=utcnow() - LEASE - timedelta(seconds=5)))
        session.commit()
        second = leases.claim_next(session, "other", LEASE)
        assert second.taken_over_from == "dead-worker"
        assert not leases.renew(session, instance_id, "dead-worker", LEASE)
        assert leases.renew(session, instance_id, "other", LEASE)
        leases.release(session, instance_id, "other")
        assert session.get(Instance, instance_id).lease_owner is None


def test_backoff_keeps_an_instance_out_of_the_queue(database):
    [instance_id] = make_instances(database, 1)
    with database.sessions() as session:
        session.execute(update(Instance).values(next_attempt_at=utcnow() + timedelta(minutes=5)))
        session.commit()
        assert leases.claim_next(session, "w", LEASE) is None
        session.execute(update(Instance).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        session.commit()
        assert leases.claim_next(session, "w", LEASE).instance_id == instance_id


def test_generation_bumps_from_two_requests_both_count(database):
    from clawdet.instances.lifecycle import bump_generation

    [instance_id] = make_instances(database, 1)
    first, second = database.sessions(), database.sessions()
    a, b = first.get(Instance, instance_id), second.get(Instance, instance_id)
    assert a.generation == b.generation == 1
    bump_generation(first, a)
    first.commit()
    bump_generation(second, b)  # loaded before the first commit: a `+= 1` would write 2 again
    second.commit()
    first.close(), second.close()
    with database.sessions() as session:
        assert session.get(Instance, instance_id).generation == 3


def test_lease_times_are_the_databases_clock_not_the_hosts(database, monkeypatch):
    """Two hosts whose clocks disagree by an hour still agree on who holds a stack."""
    [instance_id] = make_instances(database, 1)
    with database.sessions() as session:
        assert leases.claim_next(session, "host-a", LEASE).instance_id == instance_id
        claimed_until = session.get(Instance, instance_id).lease_expires_at
        database_now = leases.database_now(session)
    assert timedelta(0) < claimed_until - database_now <= LEASE
    if database.is_postgres:  # SQLite is embedded: one host, its clock is the database's
        monkeypatch.setattr(leases, "utcnow", lambda: utcnow() + timedelta(hours=1))
        with database.sessions() as session:
            assert leases.claim_next(session, "host-b-an-hour-ahead", LEASE) is None
            assert leases.renew(session, instance_id, "host-a", LEASE)
            assert session.get(Instance, instance_id).lease_expires_at - leases.database_now(session) <= LEASE


def test_one_fleet_scan_a_period_whatever_the_number_of_workers(database):
    every = timedelta(minutes=1)
    won: list[str] = []
    barrier = threading.Barrier(4)

    def worker(owner):
        barrier.wait()
        with database.sessions() as session:
            if leases.claim_period(session, "fleet-scan", owner, every):
                won.append(owner)

    threads = [threading.Thread(target=worker, args=(f"host-{n}",)) for n in range(4)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert len(won) == 1  # four workers at once, one scan
    with database.sessions() as session:
        assert not leases.claim_period(session, "fleet-scan", "host-late", every)
        session.execute(update(PeriodicRun).values(started_at=utcnow() - every - timedelta(seconds=1)))
        session.commit()
        assert leases.claim_period(session, "fleet-scan", "host-late", every)  # the next period
        assert session.get(PeriodicRun, "fleet-scan").owner == "host-late"


def test_a_dead_restores_hold_is_left_to_its_recovery_while_its_request_runs(database):
    """A worker died mid-restore: its server may be half-swapped, so no update claims it while
    its request runs (the restore's recovery takes it over); any other leftover hold lapses."""
    [instance_id] = make_instances(database, 1)
    long_ago = utcnow() - LEASE * 10
    with database.sessions() as session:
        session.execute(update(Instance).values(lease_owner="restore:dead:1", lease_expires_at=long_ago))
        request = BackupRequest(instance_id=instance_id, action="restore", backup_id="bk_1", status="running")
        session.add(request)
        session.commit()
        assert leases.claim_next(session, "worker", LEASE) is None
        request.status = "failed"  # recovered, or given up
        session.commit()
        assert leases.claim_next(session, "worker", LEASE).instance_id == instance_id
