"""An instance's backups for its owner: the JSON API (the list; a restore or an export, which a
worker carries out, since the web app holds no backup key: 202 and the request to poll) and
what the dashboard's backups card shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import Blueprint, Response, jsonify, url_for
from flask_login import login_required
from sqlalchemy import select

from clawdet.backups import export as exports
from clawdet.backups import requests as backup_requests
from clawdet.backups import service
from clawdet.errors import UserFacingError
from db import audit
from db.models import Backup, BackupRequest, Instance, utcnow
from webapp import dbs, settings
from webapp.api import owned_instance
from webapp.auth import client_ip, current
from webapp.bodies import json_body

bp = Blueprint("backups", __name__, url_prefix="/api/instances/<instance_id>")


def backup_json(row) -> dict:
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "size": row.size,
        "verified": row.verified,
        "verify_message": row.verify_message,
        "message": row.message,
        "started_at": row.started_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
    }


def request_json(row: BackupRequest) -> dict:
    return {
        "id": row.id,
        "action": row.action,
        "backup": row.backup_id,
        "status": row.status,
        "progress": row.progress,
        "message": row.message,
        "link": row.link if row.status == "done" else None,
        "link_expires_at": row.link_expires_at.isoformat() if row.link_expires_at else None,
    }


@bp.get("/backups")
@login_required
def list_backups(instance_id: str):
    instance = owned_instance(instance_id)
    return jsonify(backups=[backup_json(row) for row in service.listed_in(dbs(), instance.id)])


def queue(instance: Instance, action: backup_requests.Action, backup_id: str | None) -> BackupRequest:
    """The owner's restore or export, queued, audited and committed."""
    queued = backup_requests.request(dbs(), instance, action, backup_id, user_id=current().id)
    audit.record(
        dbs(),
        f"backup.{action.value}",
        actor=current(),
        target_type="instance",
        target_id=instance.id,
        ip=client_ip(),
        backup=queued.backup_id,
    )
    dbs().commit()
    return queued


def _queue(instance_id: str, action: backup_requests.Action):
    instance = owned_instance(instance_id)
    queued = queue(instance, action, json_body(backup=str).get("backup"))
    response = jsonify(request=request_json(queued))
    response.headers["Location"] = url_for(
        "backups.get_request", instance_id=instance.id, request_id=queued.id
    )
    return response, 202


@bp.post("/restore")
@login_required
def restore(instance_id: str):
    """Into the same instance, in place; the current state is backed up first."""
    return _queue(instance_id, backup_requests.Action.RESTORE)


@bp.post("/export")
@login_required
def export(instance_id: str):
    """A time-limited download link of a backup's archive (the newest unless one is named)."""
    return _queue(instance_id, backup_requests.Action.EXPORT)


@bp.get("/exports/<token>")
def download_export(instance_id: str, token: str):
    """An export link: whoever holds it (as a presigned address) gets the archive until it expires.
    The key is in the token only; the sealed copy is decrypted here as it streams through."""
    download = exports.opened_token(settings().secret_key, token)
    if download.instance_id != instance_id:
        raise UserFacingError(
            "link_invalid", "This download link is not valid.", "Ask for a new download.", status=404
        )
    size, chunks = exports.decrypted_archive(download)
    response = Response(chunks, mimetype="application/gzip")
    response.headers["Content-Disposition"] = f'attachment; filename="{download.filename}"'
    response.headers["Cache-Control"] = "no-store"
    if size is not None:
        response.content_length = size
    return response


@bp.get("/backup-requests/<request_id>")
@login_required
def get_request(instance_id: str, request_id: str):
    instance = owned_instance(instance_id)
    row = dbs().get(BackupRequest, request_id)
    if row is None or row.instance_id != instance.id:
        raise UserFacingError("not_found", "No such request.", "Check the request id.", status=404)
    return jsonify(request=request_json(row))


SHOWN = 14  # backups listed on the dashboard: about what retention keeps
FINISHED_SHOWN_FOR = timedelta(hours=1)


@dataclass(frozen=True)
class BackupsCard:
    backups: list[Backup]  # this instance's, newest first
    earlier: list[Backup]  # the owner's earlier instances' (final backups), restorable into this one
    pending: BackupRequest | None  # a restore or export under way
    finished: BackupRequest | None  # the last one that ended lately: its outcome, an export's link


def card(session, instance: Instance) -> BackupsCard:
    stored = (
        Backup.status == service.Status.SUCCEEDED.value,
        Backup.expires_at.is_(None) | (Backup.expires_at > utcnow()),
    )
    earlier = select(Instance.id).where(Instance.user_id == instance.user_id, Instance.id != instance.id)
    requests = select(BackupRequest).where(BackupRequest.instance_id == instance.id)
    latest = session.scalars(requests.order_by(BackupRequest.created_at.desc()).limit(1)).first()
    pending = latest if latest is not None and latest.status in ("queued", "running") else None
    finished = (
        latest
        if latest is not None and pending is None and latest.finished_at
        and latest.finished_at > utcnow() - FINISHED_SHOWN_FOR
        else None
    )  # fmt: skip
    return BackupsCard(
        backups=service.listed_in(session, instance.id)[:SHOWN],
        earlier=list(
            session.scalars(
                select(Backup)
                .where(Backup.instance_id.in_(earlier), *stored)
                .order_by(Backup.started_at.desc())
            )
        ),
        pending=pending,
        finished=finished,
    )
