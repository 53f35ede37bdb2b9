"""Backup and restore of the whole platform: the database (clawdet/ops/database_backup.py) and every customer
instance's Pulumi stack (its exported state and its `stacks/Pulumi.<name>.yaml`, whose secrets
stay encrypted under the installation's PULUMI_CONFIG_PASSPHRASE, which a restore needs too)."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from clawdet.instances.lifecycle import InstanceStatus
from clawdet.ops import database_backup as db_backup
from clawdet.settings import Settings
from db.engine import Database
from db.models import Instance

log = logging.getLogger(__name__)
DEPLOYMENT_VERSION = 3


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
        (folder / "stacks").mkdir()
        for name in names:
            state = stacks.export(name)
            if not state:
                continue  # requested but never deployed: nothing to keep
            (folder / "stacks" / f"{name}.json").write_text(
                json.dumps({"version": DEPLOYMENT_VERSION, "deployment": state})
            )
            config = settings.project_dir / "stacks" / f"Pulumi.{name}.yaml"
            if config.exists():
                shutil.copy(config, folder / "stacks" / config.name)
            exported.append(name)
    db_backup.write_manifest(folder, dumped, stacks=exported)
    return BackupReport(folder, dumped.dialect, exported)


def restore(settings: Settings, database: Database, folder: Path, *, stacks=None) -> BackupReport:
    folder = folder.resolve()
    manifest = db_backup.read_manifest(folder)
    dumped = db_backup.dump_of(manifest)
    db_backup.restore(database, folder, dumped)
    names = manifest.get("stacks") or []
    if names:
        stacks = stacks or _stacks(settings)
        (settings.project_dir / "stacks").mkdir(exist_ok=True)
        for name in names:
            config = folder / "stacks" / f"Pulumi.{name}.yaml"
            if config.exists():
                shutil.copy(config, settings.project_dir / "stacks" / config.name)
            data = json.loads((folder / "stacks" / f"{name}.json").read_text())
            stacks.import_state(name, data["version"], data["deployment"])
            log.info("restored stack %s", name)
    return BackupReport(folder, dumped.dialect, list(names))
