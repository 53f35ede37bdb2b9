"""users.json import: counts, rejections with reasons, idempotency, bcrypt logins, dry run."""

import json
import shutil
import subprocess
from pathlib import Path

import bcrypt
import pytest
from sqlalchemy import func, select

from clawdet.accounts.importer import ImportFileError, import_users, load_records
from db.models import User
from tests.fixtures import REPO

SAMPLE = REPO / "tests" / "data" / "users.json"


@pytest.fixture
def sample(tmp_path) -> Path:
    """The sample with a real bcrypt hash for Grace (password: "grace-password")."""
    records = json.loads(SAMPLE.read_text())
    records[0]["passwordHash"] = bcrypt.hashpw(b"grace-password", bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path / "users.json"
    path.write_text(json.dumps(records))
    return path


def run(database, path, dry_run=False):
    with database.sessions() as session:
        report = import_users(session, load_records(path), dry_run=dry_run)
        session.rollback() if dry_run else session.commit()
    return report


def users(database) -> int:
    with database.session() as s:
        return s.scalar(select(func.count(User.id)))


def test_import_counts_and_rejections(database, sample):
    report = run(database, sample)
    assert (report.created, report.updated, report.skipped) == (2, 0, 0)
    reasons = {rid: why for _, rid, why in report.rejected}
    assert reasons == {
        "user_bad_email": reasons["user_bad_email"],
        "user_bad_hash": "passwordHash is not a bcrypt hash",
        "user_bad_payment": "paymentMethod must be one of ['free_beta', 'paypal', 'stripe']",
        "user_dup_email": "email appears earlier in the file",
        "": reasons[""],
        "user_bad_time": "createdAt is not an ISO timestamp",
    }
    assert reasons["user_bad_email"].startswith("email is not valid")
    assert len(report.rejected) == 7  # the id-less record and the bare string both say why
    with database.session() as s:
        grace = s.get(User, "user_1708550000000_abc123def")
        assert grace.email == "grace@example.com" and grace.paid and grace.terms_accepted_at
        ada = s.scalar(select(User).where(User.x_id == "44196397"))
        assert ada.x_username == "ada" and ada.terms_accepted_at is None and ada.password_hash is None


def test_import_is_idempotent_and_updates_newer_records(database, sample):
    run(database, sample)
    again = run(database, sample)
    assert (again.created, again.updated, again.skipped) == (0, 0, 2)
    assert users(database) == 2
    records = json.loads(sample.read_text())
    records[1]["xName"] = "Ada Lovelace"
    records[1]["updatedAt"] += 1000
    sample.write_text(json.dumps(records))
    third = run(database, sample)
    assert (third.created, third.updated, third.skipped) == (0, 1, 1)
    with database.session() as s:
        assert s.scalar(select(User.x_name).where(User.x_id == "44196397")) == "Ada Lovelace"


def test_dry_run_writes_nothing(database, sample):
    report = run(database, sample, dry_run=True)
    assert report.created == 2 and report.dry_run
    assert users(database) == 0


def test_malformed_file_changes_nothing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "x",')
    with pytest.raises(ImportFileError, match="not valid JSON"):
        load_records(bad)
    bad.write_text('{"id": "x"}')
    with pytest.raises(ImportFileError, match="expected a JSON array"):
        load_records(bad)


def test_imported_bcrypt_user_can_sign_in(database, sample, client):
    run(database, sample)
    r = client.post("/api/auth/login", json={"email": "grace@example.com", "password": "grace-password"})
    assert r.status_code == 200, r.get_json()
    with database.session() as s:
        assert s.get(User, "user_1708550000000_abc123def").password_hash.startswith("$argon2id$")


def test_cli_reports_and_exits_non_zero_on_rejections(database_url, sample, tmp_path):
    clawdet = shutil.which("clawdet") or str(REPO / ".venv/bin/clawdet")
    env = {"DATABASE_URL": database_url, "CLAWDET_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [clawdet, "import-users", str(sample), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Dry run, nothing written. created=2 updated=0 skipped=0 rejected=7" in result.stdout
    assert "user_bad_hash" in result.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("nope")
    result = subprocess.run(
        [clawdet, "import-users", str(bad)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "Nothing was imported" in result.stderr
