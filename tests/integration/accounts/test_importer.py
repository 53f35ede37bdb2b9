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


GOOD = {"id": "user_good", "email": "good@example.com", "createdAt": 1708550000000}


def raw_record(record_id: str, **raw_fields: str) -> str:
    """One record's JSON text; `raw_fields` are spliced in as written (JSON's outlaws among them)."""
    fields = {
        "id": json.dumps(record_id),
        "email": json.dumps(f"{record_id}@example.com"),
        "createdAt": "1708550000000",
        **raw_fields,
    }
    return "{" + ", ".join(f"{json.dumps(key)}: {value}" for key, value in fields.items()) + "}"


def users_file(tmp_path, *records: str) -> Path:
    path = tmp_path / "users.json"
    path.write_text("[" + ", ".join([json.dumps(GOOD), *records]) + "]")
    return path


def test_numbers_no_field_can_hold_reject_their_record_and_the_rest_import(database, tmp_path):
    path = users_file(
        tmp_path,
        raw_record("inf", createdAt="Infinity"),
        raw_record("neg_inf", updatedAt="-Infinity"),
        raw_record("nan", paidAt="NaN"),
        raw_record("nan_elsewhere", extra='[1, {"x": NaN}]'),
        raw_record("beyond_double", createdAt="1e400"),
        raw_record("many_digits", createdAt="9" * 5000),
        raw_record("huge_time", createdAt="1e18"),
        raw_record("huge_int_time", createdAt="99999999999999999"),
        raw_record("iso_overflow", updatedAt='"9999-12-31T23:00:00-05:00"'),
    )
    report = run(database, path)
    assert report.created == 1 and users(database) == 1
    reasons = {rid: why for _, rid, why in report.rejected}
    not_a_number = ", which is not a number a user record can have"
    assert reasons == {
        "inf": "holds Infinity" + not_a_number,
        "neg_inf": "holds -Infinity" + not_a_number,
        "nan": "holds NaN" + not_a_number,
        "nan_elsewhere": "holds NaN" + not_a_number,
        "beyond_double": "holds 1e400" + not_a_number,
        "many_digits": "holds an integer of 5000 digits" + not_a_number,
        "huge_time": "createdAt is out of range: use a date between the years 1 and 9999",
        "huge_int_time": "createdAt is out of range: use a date between the years 1 and 9999",
        "iso_overflow": "updatedAt is out of range: use a date between the years 1 and 9999",
    }


def test_text_a_database_cannot_store_rejects_its_record(database, tmp_path):
    path = users_file(
        tmp_path,
        '{"id": "nul\\u0000id", "email": "a@example.com", "createdAt": 1}',
        '{"id": "lone", "email": "b@example.com", "name": "x\\ud800", "createdAt": 1}',
    )
    report = run(database, path)
    assert report.created == 1 and users(database) == 1
    cannot_hold = " holds a NUL character or a lone surrogate, which text cannot hold"
    assert {rid: why for _, rid, why in report.rejected} == {
        "'nul\\x00id'": "id" + cannot_hold,
        "lone": "name" + cannot_hold,
    }


def test_nesting_too_deep_to_read_is_a_file_error_and_shallower_nesting_a_rejection(database, tmp_path):
    path = tmp_path / "users.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ImportFileError, match="nested too deeply"):
        load_records(path)
    nested_id = "[" * 500 + "]" * 500
    path = users_file(tmp_path, f'{{"id": {nested_id}, "email": "n@example.com", "createdAt": 1}}')
    report = run(database, path)
    assert report.created == 1 and report.rejected == [(1, "", "id must be a string")]


def test_cli_answers_a_file_it_cannot_read_in_words(database_url, tmp_path):
    clawdet = shutil.which("clawdet") or str(REPO / ".venv/bin/clawdet")
    env = {"DATABASE_URL": database_url, "CLAWDET_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    odd = users_file(tmp_path, raw_record("inf", createdAt="Infinity"))
    expected = {
        deep: "nested too deeply to read",
        tmp_path: "cannot be read",
        odd: "",
    }
    for path, words in expected.items():
        result = subprocess.run(
            [clawdet, "import-users", str(path), "--dry-run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert words in result.stderr
    assert "rejected record #1 (inf): holds Infinity" in result.stdout


def test_an_imported_id_that_is_no_label_value_gets_a_valid_owner_label(database, settings, tmp_path):
    from clawdet.instances.requests import request_instance
    from clawdet.reconciler.reconciler import Reconciler
    from programs import naming
    from tests.fixtures.cloud import unreached_target

    odd_ids = ["legacy:grace@example.com", "x" * 64]
    path = tmp_path / "users.json"
    path.write_text(
        json.dumps(
            [
                {**GOOD, "id": user_id, "email": f"u{n}@example.com", "paid": True, "termsAccepted": True}
                for n, user_id in enumerate(odd_ids)
            ]
        )
    )
    assert run(database, path).created == 2
    target = unreached_target(sandbox=True)
    no_engine = type("NoEngine", (), {"target": target})()
    reconciler = Reconciler(settings, database, stacks=no_engine, notifier=object())
    labels = set()
    with database.session() as session:
        for n, user_id in enumerate(odd_ids):
            owner = session.get(User, user_id)
            row = request_instance(session, owner, subdomain=f"odd{n}")
            label, _ = reconciler.stack_config(row)["clawdet:userId"]
            assert label == naming.owner_label(user_id) == naming.validate_label_value(label)
            labels.add(label)
    assert len(labels) == 2
