"""Upgrading keeps every row: on SQLite a migration that rebuilds `users` would, with foreign
keys on, cascade-delete every instance, event and usage row."""

import sqlite3

from db.migrate import upgrade

DAY = "2026-11-01 00:00:00"
ROWS = {
    "users": {"id": "u1", "email": "a@example.com", "email_verified": 0, "role": "user", "paid": 1,
              "disabled": 0, "session_version": 1, "failed_logins": 0, "created_at": DAY, "updated_at": DAY},
    "instances": {"id": "i1", "user_id": "u1", "stack_name": "a", "subdomain": "a", "tier": "free",
                  "region": "hel1", "desired_state": "running", "status": "ready", "status_message": "",
                  "generation": 1, "observed_generation": 1, "attempts": 0, "restarts": 0,
                  "llm_key_version": 1, "gateway_token_version": 1, "health": "healthy",
                  "health_failures": 0, "image_pinned": 0, "created_at": DAY, "updated_at": DAY},
    "instance_events": {"instance_id": "i1", "at": DAY, "kind": "status", "message": "x"},
}  # fmt: skip


def test_upgrading_from_the_first_rollouts_release_keeps_every_row(tmp_path):
    path = tmp_path / "old.db"
    upgrade(f"sqlite:///{path}", "0006")
    with sqlite3.connect(path) as db:
        for table, row in ROWS.items():
            db.execute(
                f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
    upgrade(f"sqlite:///{path}", "head")
    with sqlite3.connect(path) as db:
        assert [db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ROWS] == [1, 1, 1]
        assert "failed_logins" not in [row[1] for row in db.execute("PRAGMA table_info(users)")]
        # Addresses from before verification stay their owners' (verified), and claimed since sign-up.
        assert db.execute("SELECT email_verified, email_set_at FROM users").fetchone() == (1, DAY)
        assert db.execute("SELECT count(*) FROM installation").fetchone()[0] == 1
        # Credentials issued before the roots stay HMACs of SECRET_KEY until rotated.
        assert db.execute("SELECT llm_key_legacy, gateway_token_legacy FROM instances").fetchone() == (1, 1)
