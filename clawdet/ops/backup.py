"""Backup and restore of the whole platform: the database (clawdet/ops/database_backup.py) and every customer
instance's Pulumi stack (its exported state and its `stacks/Pulumi.<name>.yaml`, whose secrets
stay encrypted under the installation's PULUMI_CONFIG_PASSPHRASE, which a restore needs too).

A restore checks everything before it writes anything: every name and path the manifest gives,
that the database is empty, and that no stack holds state newer than the backup's copy (rolling
it back would make the next sweep delete the servers made since). It restores the stacks first,
each one whole, and the database last, in one transaction; running it again after a failure
skips the stacks already holding the backup's checkpoint and finishes the job."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from clawdet.instances.lifecycle import InstanceStatus
from clawdet.ops import database_backup as db_backup
from clawdet.settings import Settings
from db.engine import Database
from db.models import Instance

log = logging.getLogger(__name__)
DEPLOYMENT_VERSION = 3
STACK_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # a DNS label, as subdomains are


@dataclass
class BackupReport:
    folder: Path
    database: str
    stacks: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"backup  {self.folder}  database={self.database} stacks={len(self.stacks)}"


def stack_names(database: Database) -> list[str]:
    """Instances a worker has touched (a stack may exist) and not yet removed."""
    with database.sessions() as session:
        return list(
            session.scalars(
                select(Instance.stack_name)
                .where(
                    Instance.status != InstanceStatus.DESTROYED.value,
                    (Instance.status != InstanceStatus.PENDING.value)
                    | (Instance.observed_generation > 0)
                    | (Instance.attempts > 0),
                )
                .order_by(Instance.stack_name)
            )
        )


def _stacks(settings: Settings):
    from clawdet import cloud
    from clawdet.reconciler.stacks import Stacks

    return Stacks(settings, cloud.resolve(settings))


def backup(settings: Settings, database: Database, folder: Path, *, stacks=None) -> BackupReport:
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()):
        raise db_backup.BackupError(
            "backup_folder_not_empty",
            f"{folder} is not empty.",
            "Choose a new folder for each backup.",
            status=409,
        )
    dumped = db_backup.dump(database, folder)
    names = stack_names(database)
    exported: list[str] = []
    if names:
        stacks = stacks or _stacks(settings)
        saved = db_backup.private_folder(folder / "stacks")
        for name in names:
            state = stacks.export(name)
            if not state:
                continue  # requested but never deployed: nothing to keep
            db_backup.write_private(
                saved / f"{name}.json", json.dumps({"version": DEPLOYMENT_VERSION, "deployment": state})
            )
            config = settings.project_dir / "stacks" / f"Pulumi.{name}.yaml"
            if config.exists():
                db_backup.write_private(saved / config.name, config.read_bytes())
            exported.append(name)
    db_backup.write_manifest(folder, dumped, stacks=exported)
    return BackupReport(folder, dumped.dialect, exported)


@dataclass(frozen=True)
class SavedStack:
    """One stack as the backup holds it, checked."""

    name: str
    version: int
    deployment: dict[str, Any]
    config: bytes | None  # its stacks/Pulumi.<name>.yaml


def restore(
    settings: Settings, database: Database, folder: Path, *, stacks=None, overwrite_newer: bool = False
) -> BackupReport:
    """`overwrite_newer`: roll back stacks whose state is newer than the backup's copy too."""
    folder = folder.resolve()
    manifest = db_backup.read_manifest(folder)
    dumped = db_backup.dump_of(manifest, folder)
    saved = saved_stacks(folder, manifest)
    db_backup.check_restorable(database, folder, dumped)
    if saved:
        stacks = stacks or _stacks(settings)
        to_import = stacks_to_import(stacks, saved, overwrite_newer=overwrite_newer)
        for stack in saved:
            _restore_stack(settings, stacks, stack, import_state=stack.name in to_import)
    db_backup.restore(database, folder, dumped)
    return BackupReport(folder, dumped.dialect, [stack.name for stack in saved])


def saved_stacks(folder: Path, manifest: dict) -> list[SavedStack]:
    """The manifest's stacks, each name a plain stack name and each file inside the folder;
    refused in words otherwise (nothing has been written yet)."""
    names = manifest.get("stacks") or []
    if not isinstance(names, list):
        raise db_backup.not_a_backup(folder, f"{db_backup.MANIFEST}: 'stacks' is not a list of names.")
    for name in names:
        if not isinstance(name, str) or not STACK_NAME.fullmatch(name):
            raise db_backup.not_a_backup(
                folder,
                f"{db_backup.MANIFEST} names the stack {str(name)[:80]!r}, which is not a stack name "
                "(1-63 of a-z, 0-9 and '-'; no paths).",
            )
    if len(set(names)) != len(names):
        raise db_backup.not_a_backup(folder, f"{db_backup.MANIFEST} names a stack twice.")
    return [_saved_stack(folder, name) for name in names]


def _saved_stack(folder: Path, name: str) -> SavedStack:
    state_file = db_backup.confined(folder, folder / "stacks" / f"{name}.json")
    try:
        data = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise db_backup.not_a_backup(folder, f"{state_file} is missing or not readable JSON.") from exc
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("version"), int)
        or not isinstance(data.get("deployment"), dict)
    ):
        raise db_backup.not_a_backup(folder, f"{state_file} is not a stack export.")
    config_file = folder / "stacks" / f"Pulumi.{name}.yaml"
    config = db_backup.confined(folder, config_file).read_bytes() if config_file.exists() else None
    return SavedStack(name, data["version"], data["deployment"], config)


def stacks_to_import(stacks, saved: list[SavedStack], *, overwrite_newer: bool) -> set[str]:
    """The stacks whose state the backup's copy replaces. Refuses, naming them, stacks holding
    newer state (unless `overwrite_newer`); leaves out those already holding the backup's copy."""
    verdicts = {stack.name: state_verdict(stacks.export(stack.name), stack.deployment) for stack in saved}
    newer = sorted(name for name, verdict in verdicts.items() if verdict == "newer")
    if newer and not overwrite_newer:
        raise db_backup.BackupError(
            "stack_state_newer",
            f"The state of {', '.join(newer)} is newer than this backup's copy (or of unknown age): "
            "restoring would roll it back, and the next sweep would delete the servers made since.",
            "Nothing was changed. Restore into an empty state backend, or pass "
            "--overwrite-newer-stacks to roll those stacks back anyway.",
            status=409,
        )
    return {name for name, verdict in verdicts.items() if verdict != "restored"}


def state_verdict(current: dict[str, Any], saved: dict[str, Any]) -> str:
    """What to do with a stack's `current` state: "restore", "restored" (it is the backup's very
    checkpoint) or "newer" (a later checkpoint, or one of unknown age, that holds resources)."""
    if not current.get("resources"):
        return "restore"  # no stack, or one that holds nothing to lose
    if _checkpoint(current) == _checkpoint(saved):
        return "restored"
    now, then = _checkpoint_time(current), _checkpoint_time(saved)
    if now is None or then is None or now >= then:
        return "newer"
    return "restore"


def _checkpoint(deployment: dict[str, Any]) -> tuple[Any, list[Any]]:
    """What identifies a checkpoint: its time (an import keeps it) and its resources' URNs
    (secret outputs are encrypted afresh by an import, so the resources themselves differ)."""
    resources = deployment.get("resources") or []
    urns = [r.get("urn") if isinstance(r, dict) else r for r in resources]
    return (deployment.get("manifest") or {}).get("time"), urns


def _checkpoint_time(deployment: dict[str, Any]) -> datetime | None:
    text = (deployment.get("manifest") or {}).get("time")
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else None


def _restore_stack(settings: Settings, stacks, stack: SavedStack, *, import_state: bool) -> None:
    config_file = settings.project_dir / "stacks" / f"Pulumi.{stack.name}.yaml"
    if stack.config is not None and (not config_file.exists() or config_file.read_bytes() != stack.config):
        _replace(config_file, stack.config)
    if import_state:
        stacks.import_state(stack.name, stack.version, stack.deployment)
        log.info("restored stack %s", stack.name)
    else:
        log.info("stack %s already holds the backup's checkpoint", stack.name)


def _replace(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all (a new file, then renamed over the old)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
