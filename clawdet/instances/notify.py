"""What the reconciler tells people. The default records it; the operations issue's email
outbox plugs in here without the reconciler knowing about SMTP."""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy.orm import Session

from db.models import Instance, Rollout

log = logging.getLogger(__name__)


class Notifier(Protocol):
    def instance_ready(self, session: Session, instance: Instance) -> None: ...
    def instance_failed(self, session: Session, instance: Instance, reason: str) -> None: ...
    def health_changed(self, session: Session, instance: Instance, healthy: bool) -> None: ...
    def rollout_halted(self, session: Session, rollout: Rollout) -> None: ...


class LogNotifier:
    def instance_ready(self, session: Session, instance: Instance) -> None:
        log.info("instance %s is ready at %s", instance.stack_name, instance.url)

    def instance_failed(self, session: Session, instance: Instance, reason: str) -> None:
        log.warning("instance %s failed: %s", instance.stack_name, reason)

    def health_changed(self, session: Session, instance: Instance, healthy: bool) -> None:
        log.info("instance %s is %s", instance.stack_name, "healthy" if healthy else "down")

    def rollout_halted(self, session: Session, rollout: Rollout) -> None:
        log.error("rollout %s of %s halted: %s", rollout.id, rollout.image, rollout.message)
