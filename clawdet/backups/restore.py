"""Restore a backup in place: into the instance it came from, or into a newer instance of the
same owner (a destroyed instance's final backup, into its successor). The current state is
backed up first (a `pre_restore` backup, so the restore itself can be undone), the chosen backup
is decrypted here and restored on the server by OpenClaw's own `backup restore`
(remote_restore.py). A restore that fails leaves the instance on its previous state."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from clawdet.backups import hold, remote, remote_restore, service
from clawdet.backups.service import BackupError, Kind
from clawdet.reconciler.health import wait_healthy
from db.models import Instance

log = logging.getLogger(__name__)

HEALTH_DEADLINE = 180.0  # a real gateway answers /healthz 10-20 s after it starts

Step = Callable[[int, str], None]  # (percent done, what happens now), for the owner's progress bar


def _quiet(progress: int, message: str) -> None:
    pass


@dataclass(frozen=True)
class Restored:
    backup_id: str
    pre_restore_backup_id: str


def restore(
    settings, database, instance_id: str, backup_id: str, *, store=None, target=None, step: Step = _quiet
) -> Restored:
    """`target`: the cloud.CloudTarget whose health URL shows the gateway is back (default: this
    installation's); `step` hears of each stage."""
    store = store or service.store_for(settings)
    chosen = service.stored_backup(database, backup_id)
    with database.sessions() as session:
        instance = session.get(Instance, instance_id)
        source = session.get(Instance, chosen.instance_id)
        if source is None or source.user_id != instance.user_id:
            raise BackupError(
                "backup_not_found", f"Backup {backup_id} is not one of this owner's.", status=404
            )
        address, fqdn = instance.ipv4, instance.subdomain
    target = target or _target(settings)
    url = target.health_url(fqdn=f"{fqdn}.{target.base_domain}", ipv4=address)
    with hold.holding(database, instance_id) as still_held:
        before = _restore_held(
            settings, database, instance_id, backup_id, address, url, store, step, still_held
        )
    log.info("restored %s into %s (previous state: %s)", backup_id, instance_id, before.id)
    return Restored(backup_id, before.id)


def _restore_held(settings, database, instance_id, backup_id, address, url, store, step: Step, still_held):
    step(10, "Backing up your assistant's current state first")
    before = service.create(settings, database, instance_id, Kind.PRE_RESTORE, store=store)
    if before.status != service.Status.SUCCEEDED.value:
        raise BackupError(
            "restore_refused",
            f"The current state could not be backed up first ({before.message}), so nothing was restored.",
            "Fix what the message says and try again.",
            status=409,
        )
    with service.work_folder(settings) as folder:
        archive = folder / "restore.tar.gz"
        step(40, "Fetching and decrypting the backup")
        service.download(settings, database, backup_id, archive, store=store)
        state_asset = _state_asset(service.archive_manifest(archive))
        server = remote.Server(address, service.ssh_port(settings), settings.instance_ssh_private_key)
        step(60, "Restoring it on your server and starting your assistant on it")
        try:
            remote_restore.restore_in_place(
                server,
                archive,
                before.id,
                state_asset,
                lambda: wait_healthy(url, HEALTH_DEADLINE).ok,
                still_held,
            )
        except remote.RemoteError as exc:
            log.warning("restore of %s into %s failed: %s", backup_id, instance_id, exc)
            raise BackupError(
                "restore_failed",
                f"The restore did not finish: {exc}. The assistant runs on its previous state.",
                f"Its state before the attempt is backup {before.id}.",
                status=502,
            )
    return before


def _state_asset(manifest: dict) -> str:
    for asset in manifest.get("assets") or []:
        path = str(asset.get("archivePath") or "")
        if asset.get("kind") == "state" and path and ".." not in path.split("/") and not path.startswith("/"):
            return path
    raise BackupError("backup_corrupt", "The archive's manifest names no state folder to restore.")


def _target(settings):
    from clawdet import cloud

    return cloud.resolve(settings)
