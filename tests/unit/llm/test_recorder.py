"""The usage recorder loses no row: a failed batch is written row by row, rows wait out a
database outage, and what is unwritten at exit is spooled to disk and written by the next run."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from clawdet.llm.recorder import UsageEntry, UsageRecorder
from db.models import LlmUsage
from tests.fixtures.llm import customer_with_instance


def entry(user_id: str, instance_id: str, tokens: int) -> UsageEntry:
    return UsageEntry(user_id, instance_id, "free_beta", True, "sandbox-small", tokens, 1)


def tokens_by_instance(database) -> dict[str, int]:
    with database.session() as s:
        return {row.instance_id: row.prompt_tokens for row in s.scalars(select(LlmUsage))}


def failing_first(recorder: UsageRecorder, times: int):
    """The recorder's writes fail `times` times, as when the database is away."""
    write, calls = recorder._write, {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        if calls["n"] <= times:
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return write(batch)

    recorder._write = flaky
    return calls


def test_a_failed_batch_is_written_row_by_row_and_only_a_gone_instance_is_dropped(database):
    user_a, instance_a, _ = customer_with_instance(database, "s", "a@example.com")
    user_b, instance_b, _ = customer_with_instance(database, "s", "b@example.com")
    recorder = UsageRecorder(database)
    failing_first(recorder, 1)  # the batch, then each row on its own
    for item in (
        entry(user_a, instance_a, 10),
        entry(user_b, "inst_gone", 20),
        entry(user_b, instance_b, 30),
    ):
        recorder.submit(item)
    assert recorder.flush()
    assert tokens_by_instance(database) == {instance_a: 10, instance_b: 30}


def test_rows_wait_out_a_database_outage(database):
    user_id, instance_id, _ = customer_with_instance(database, "s")
    recorder = UsageRecorder(database)
    calls = failing_first(recorder, 4)
    recorder.submit(entry(user_id, instance_id, 7))
    assert recorder.flush(timeout=15)
    assert calls["n"] == 5 and tokens_by_instance(database) == {instance_id: 7}


def test_rows_unwritten_at_exit_are_spooled_and_written_by_the_next_run(database, tmp_path):
    user_id, instance_id, _ = customer_with_instance(database, "s")
    spool = tmp_path / "spool.jsonl"
    first = UsageRecorder(database, spool=spool)
    failing_first(first, 10_000)
    for tokens in (5, 6):
        first.submit(entry(user_id, instance_id, tokens))
    first.close(timeout=0.5)
    assert spool.exists() and tokens_by_instance(database) == {}
    second = UsageRecorder(database, spool=spool)
    second.submit(entry(user_id, instance_id, 100))
    assert second.flush()
    assert tokens_by_instance(database) == {instance_id: 111} and not spool.exists()


def test_a_spool_with_a_torn_line_and_an_older_format_is_written_all_the_same(database, tmp_path):
    user_id, instance_id, _ = customer_with_instance(database, "s")
    spool = tmp_path / "spool.jsonl"
    old_format = {"user_id": user_id, "instance_id": instance_id, "payment_method": None, "paid": True}
    old_format |= {"model": "sandbox-small", "prompt_tokens": 3, "completion_tokens": 4, "lease_id": None}
    spool.write_text(json.dumps(old_format) + "\n" + '{"user_id": "torn\n')
    recorder = UsageRecorder(database, spool=spool)
    recorder.submit(entry(user_id, instance_id, 10))
    assert recorder.flush()
    assert tokens_by_instance(database) == {instance_id: 13} and not list(tmp_path.glob("spool.jsonl*"))
