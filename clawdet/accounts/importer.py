"""Import the seed's `data/users.json` (camelCase `User` records) into the users table.

Idempotent: a record is matched by id, then email, then X id; an unchanged record is skipped, a
record whose `updatedAt` is newer than the row is updated, anything else is created. bcrypt
hashes are kept as they are (they keep working and are upgraded to argon2id at the next login).
Session tokens are never imported. The whole file is one transaction: a malformed file, or
`dry_run`, changes nothing.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from db.models import PaymentMethod, User

BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$")
PAYMENT_METHODS = {m.value for m in PaymentMethod}
MAX_INTEGER_DIGITS = 20  # a millisecond timestamp has 13; longer ones are refused, not computed


@dataclass(frozen=True)
class BadNumber:
    """Stands in for a number no field can hold: `Infinity`/`NaN` (which Python's json accepts
    but JSON does not), a float beyond double range, an integer of very many digits."""

    text: str


class ImportFileError(ValueError):
    """The file as a whole cannot be read; nothing was imported."""


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (index, id, reason)
    dry_run: bool = False

    def lines(self) -> list[str]:
        head = "Dry run, nothing written. " if self.dry_run else ""
        out = [
            f"{head}created={self.created} updated={self.updated} "
            f"skipped={self.skipped} rejected={len(self.rejected)}"
        ]
        out += [f"  rejected record #{i} ({rid or 'no id'}): {why}" for i, rid, why in self.rejected]
        return out


def load_records(path: Path) -> list[Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ImportFileError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: not valid JSON ({exc})") from exc
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot be read ({exc.strerror})") from exc
    raw = _decode(text, path)
    if isinstance(raw, dict) and isinstance(raw.get("users"), list):
        raw = raw["users"]
    if not isinstance(raw, list):
        raise ImportFileError(f'{path}: expected a JSON array of users (or {{"users": [...]}})')
    return raw


def _decode(text: str, path: Path) -> Any:
    """The file's JSON, with every number no field can hold left as a BadNumber (the record that
    holds one is rejected, the others imported)."""
    try:
        return json.loads(
            text, parse_constant=BadNumber, parse_float=_float_or_bad, parse_int=_integer_or_bad
        )
    except json.JSONDecodeError as exc:
        raise ImportFileError(f"{path}: not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise ImportFileError(
            f"{path}: nested too deeply to read; users.json holds an array of flat user objects"
        ) from exc


def _float_or_bad(text: str) -> float | BadNumber:
    value = float(text)
    return value if math.isfinite(value) else BadNumber(text)


def _integer_or_bad(text: str) -> int | BadNumber:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        return BadNumber(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def import_users(session: Session, records: list[Any], *, dry_run: bool = False) -> ImportReport:
    """Apply `records` inside the caller's transaction; the caller commits (or not, on dry run)."""
    report = ImportReport(dry_run=dry_run)
    seen_emails: set[str] = set()
    for index, record in enumerate(records):
        try:
            fields = _parse(record)
        except ValueError as exc:
            report.rejected.append((index, _shown_id(record), str(exc)))
            continue
        if fields["email"] in seen_emails:
            report.rejected.append((index, fields["id"], "email appears earlier in the file"))
            continue
        seen_emails.add(fields["email"])
        outcome = _apply(session, fields)
        if outcome.startswith("rejected:"):
            report.rejected.append((index, fields["id"], outcome.removeprefix("rejected: ")))
        else:
            setattr(report, outcome, getattr(report, outcome) + 1)
    session.flush()
    return report


def _shown_id(record: Any) -> str:
    """The record's id for the report: a rejected record's id may be anything (a deeply nested
    list, a lone surrogate no terminal can print)."""
    record_id = record.get("id") if isinstance(record, dict) else None
    if not isinstance(record_id, str):
        return ""
    shown = record_id[:64]
    return shown if shown.isprintable() else ascii(shown)


def _apply(session: Session, fields: dict[str, Any]) -> str:
    clauses = [User.id == fields["id"], User.email == fields["email"]]
    if fields["x_id"]:
        clauses.append(User.x_id == fields["x_id"])
    matches = session.scalars(select(User).where(or_(*clauses))).all()
    if len(matches) > 1:
        return "rejected: id, email and X id belong to different existing users"
    if not matches:
        session.add(User(**fields))
        session.flush()
        return "created"
    user = matches[0]
    if fields["updated_at"] <= user.updated_at:
        return "skipped"
    for name, value in fields.items():
        if name not in {"id", "created_at"}:
            setattr(user, name, value)
    return "updated"


def _parse(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    bad = _bad_number_in(record)
    if bad is not None:
        raise ValueError(f"holds {bad.text}, which is not a number a user record can have")
    user_id = _text(record, "id", required=True, limit=64)
    email = _email(record.get("email"))
    password_hash = _text(record, "passwordHash", limit=255)
    if password_hash and not BCRYPT_HASH.match(password_hash):
        raise ValueError("passwordHash is not a bcrypt hash")
    payment_method = _text(record, "paymentMethod", limit=16)
    if payment_method and payment_method not in PAYMENT_METHODS:
        raise ValueError(f"paymentMethod must be one of {sorted(PAYMENT_METHODS)}")
    created_at = _time(record.get("createdAt"), "createdAt", required=True)
    updated_at = _time(record.get("updatedAt"), "updatedAt") or created_at
    paid = _flag(record, "paid")
    return {
        "id": user_id,
        "email": email,
        "password_hash": password_hash,
        "name": _text(record, "name", limit=100),
        "x_id": _text(record, "xId", limit=64),
        "x_username": _text(record, "xUsername", limit=64),
        "x_name": _text(record, "xName", limit=100),
        "x_profile_image": _text(record, "xProfileImage", limit=500),
        "email_verified": _flag(record, "emailVerified"),
        "terms_accepted_at": updated_at if _flag(record, "termsAccepted") else None,
        "paid": paid,
        "payment_method": payment_method,
        "paid_at": _time(record.get("paidAt"), "paidAt") or (created_at if paid else None),
        "created_at": created_at,
        "updated_at": updated_at,
    }


def _bad_number_in(record: dict) -> BadNumber | None:
    pending: list[Any] = [record]  # a loop, not recursion: nesting may be as deep as json allows
    while pending:
        item = pending.pop()
        if isinstance(item, BadNumber):
            return item
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _text(record: dict, key: str, *, required: bool = False, limit: int) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        if required:
            raise ValueError(f"{key} is missing")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    if not _storable(value):
        raise ValueError(f"{key} holds a NUL character or a lone surrogate, which text cannot hold")
    if len(value) > limit:
        raise ValueError(f"{key} is longer than {limit} characters")
    return value


def _storable(text: str) -> bool:
    """Text every database takes: UTF-8 encodable (JSON's \\ud800 escapes are not) and NUL-free."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _flag(record: dict, key: str) -> bool:
    value = record.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")
    return value


def _email(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("email is missing")
    try:
        return normalise_email(value)
    except EmailNotValidError as exc:
        raise ValueError(f"email is not valid: {exc}") from exc


def normalise_email(value: str) -> str:
    """One spelling per mailbox: trimmed, IDNA domain, lower case."""
    result = validate_email(value.strip(), check_deliverability=False)
    return result.normalized.lower()


def _time(value: Any, key: str, *, required: bool = False) -> datetime | None:
    if value is None or value == "":
        if required:
            raise ValueError(f"{key} is missing")
        return None
    if isinstance(value, bool):
        raise ValueError(f"{key} must be a timestamp")
    if isinstance(value, (int, float)):
        try:
            seconds = value / 1000 if value > 10**11 else value  # JavaScript milliseconds
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"{key} is out of range: use a date between the years 1 and 9999") from exc
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"{key} is not an ISO timestamp") from exc
        try:
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except OverflowError as exc:
            raise ValueError(f"{key} is out of range: use a date between the years 1 and 9999") from exc
    raise ValueError(f"{key} must be a timestamp")
