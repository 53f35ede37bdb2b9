"""The nightly pass when passes overlap (several workers, or the command beside one) and when an
operation holds an instance: each instance is backed up once a night, a held one later."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from clawdet.backups import nightly, service
from db.models import Backup, Instance, utcnow
from tests.fixtures.backups import customer

pytestmark = pytest.mark.postgres

AFTER_THE_WINDOW = datetime.combine(utcnow().date(), datetime.min.time(), UTC) + timedelta(hours=6)


class EmptyStore:
    def keys(self, prefix: str) -> list[str]:
        return []

    def delete(self, key: str) -> None:
        pass


@pytest.fixture
def backed_up(monkeypatch) -> list[str]:
    """Stands in for the backup itself (SSH, the bucket): records the instance, writes its row."""
    made: list[str] = []

    def create(settings, database, instance_id, kind, *, store=None):
        made.append(instance_id)
        time.sleep(0.05)  # long enough for the other pass to reach the same instance
        with database.sessions() as session:
            row = Backup(instance_id=instance_id, kind=kind.value, status="succeeded")
            session.add(row)
            session.commit()
            session.refresh(row)
            session.expunge(row)
        return row

    monkeypatch.setattr(service, "create", create)
    return made


def running_instances(database, count: int) -> list[str]:
    ids = [customer(database, None, f"night{n}") for n in range(count)]
    with database.sessions() as session:
        for instance_id in ids:
            row = session.get(Instance, instance_id)
            row.ipv4, row.server_id = "192.0.2.10", "1"
        session.commit()
    return ids


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_passes_at_once_back_each_instance_up_once(database, settings, backed_up, monkeypatch):
    ids = running_instances(database, 4)
    both_listed = threading.Barrier(2, timeout=30)
    listed = nightly.due

    def due_then_wait(*args, **kwargs):
        found = listed(*args, **kwargs)
        both_listed.wait()  # each pass has every instance on its list before either backs one up
        return found

    monkeypatch.setattr(nightly, "due", due_then_wait)
    reports: list[nightly.NightlyReport] = []

    def one_pass() -> None:
        reports.append(nightly.run(settings, database, now=AFTER_THE_WINDOW, store=EmptyStore()))

    passes = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in passes:
        thread.start()
    for thread in passes:
        thread.join(60)

    assert sorted(backed_up) == sorted(ids)
    assert sorted(reports[0].made + reports[1].made) == sorted(ids)
    with database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Backup)) == len(ids)

    # The next night, each is due (and claimed) again.
    monkeypatch.setattr(nightly, "due", listed)
    again = nightly.run(settings, database, now=AFTER_THE_WINDOW + timedelta(days=1), store=EmptyStore())
    assert sorted(again.made) == sorted(ids)


def test_an_instance_an_operation_holds_is_backed_up_by_a_later_pass(database, settings, backed_up):
    [held, free] = running_instances(database, 2)
    with database.sessions() as session:
        row = session.get(Instance, held)
        row.lease_owner, row.lease_expires_at = "worker-1", utcnow() + timedelta(minutes=5)
        session.commit()

    report = nightly.run(settings, database, now=AFTER_THE_WINDOW, store=EmptyStore())
    assert (report.made, report.busy, report.failed) == ([free], [held], [])
    assert backed_up == [free]

    with database.sessions() as session:
        row = session.get(Instance, held)
        row.lease_owner = row.lease_expires_at = None
        session.commit()
    later = nightly.run(settings, database, now=AFTER_THE_WINDOW + timedelta(minutes=5), store=EmptyStore())
    assert (later.made, later.busy) == ([held], [])
    assert backed_up == [free, held]


def test_an_instance_without_a_nightly_backup_for_36_hours_is_emailed_to_the_operators_once_a_day(
    database, settings, backed_up
):
    from db.models import OutboxEmail, User

    [held] = running_instances(database, 1)
    with database.sessions() as session:
        session.add(User(email="ops@example.com", role="admin", email_verified=True, name="Ops"))
        row = session.get(Instance, held)
        row.ready_at = utcnow() - timedelta(days=3)  # and an operation holds it on every pass
        row.lease_owner, row.lease_expires_at = "worker-1", utcnow() + timedelta(minutes=5)
        session.commit()
    for minutes in (0, 5):  # two passes: one email that day
        report = nightly.run(
            settings, database, now=AFTER_THE_WINDOW + timedelta(minutes=minutes), store=EmptyStore()
        )
        assert report.busy == [held] and report.failed == []
    with database.sessions() as session:
        [alert] = session.scalars(select(OutboxEmail).where(OutboxEmail.kind == "backups_failed")).all()
    assert "without a nightly backup for more than 36 hours: night0" in alert.text_body
    assert "failed on" not in alert.text_body and alert.subject.endswith("(1)")


def test_a_failure_is_emailed_even_after_that_days_missing_only_email(database, settings):
    from clawdet.backups import alerts
    from db.models import User

    [failing] = running_instances(database, 1)
    with database.sessions() as session:
        session.add(User(email="ops@example.com", role="admin", email_verified=True, name="Ops"))
        session.commit()
    assert alerts.notify(settings, database, [], ["quiet"]) == 1
    assert alerts.notify(settings, database, [], ["quiet"]) == 0  # once a day
    assert alerts.notify(settings, database, [failing], ["quiet"]) == 1  # failures have their own slot
    assert alerts.notify(settings, database, [failing], []) == 0
