"""The reconciler's notifier that emails the instance's owner (through the outbox) and logs.

Health alerts are debounced per instance so a flapping gateway does not send a storm: a "down"
alert goes out only when the last alert was not already "down" and no "down" alert went out in
the last `alert_debounce_minutes`; a "recovered" alert only answers a "down" alert.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from clawdet.instances.notify import LogNotifier
from clawdet.mail import outbox as mail
from clawdet.ops import metrics as ops_metrics
from clawdet.settings import Settings
from db.models import Instance, OutboxEmail, Role, Rollout, User, utcnow

HEALTH_KINDS = ("health_down", "health_up")


class EmailNotifier(LogNotifier):
    def __init__(self, settings: Settings):
        self.settings = settings

    def _context(self, instance: Instance, **extra) -> dict:
        user = instance.user
        return {
            "name": user.name or user.x_username or "there",
            "subdomain": instance.subdomain,
            "url": instance.url or f"https://{instance.subdomain}.{self.settings.base_domain}",
            "dashboard_url": f"{self.settings.public_url}/dashboard",
            "tier": instance.tier,
            "region": instance.region,
            **extra,
        }

    def instance_ready(self, session: Session, instance: Instance) -> None:
        super().instance_ready(session, instance)
        mail.enqueue(
            session,
            "instance_ready",
            instance.user.email,
            self._context(instance),
            user_id=instance.user_id,
            instance_id=instance.id,
            dedupe_key=f"ready:{instance.id}:{instance.generation}",
        )

    def instance_failed(self, session: Session, instance: Instance, reason: str) -> None:
        super().instance_failed(session, instance, reason)
        mail.enqueue(
            session,
            "instance_failed",
            instance.user.email,
            self._context(instance, reason=reason),
            user_id=instance.user_id,
            instance_id=instance.id,
            dedupe_key=f"failed:{instance.id}:{instance.generation}",
        )

    def health_changed(self, session: Session, instance: Instance, healthy: bool) -> None:
        super().health_changed(session, instance, healthy)
        kind = "health_up" if healthy else "health_down"
        if not self.should_alert(session, instance.id, healthy):
            ops_metrics.increment(session, "clawdet_health_alerts_total", {"kind": kind, "sent": "false"})
            return
        sent = mail.enqueue(
            session,
            kind,
            instance.user.email,
            self._context(instance, since=utcnow().strftime("%Y-%m-%d %H:%M UTC")),
            user_id=instance.user_id,
            instance_id=instance.id,
        )
        ops_metrics.increment(
            session, "clawdet_health_alerts_total", {"kind": kind, "sent": str(sent).lower()}
        )

    def rollout_halted(self, session: Session, rollout: Rollout) -> None:
        """Every operator (an admin with an email) hears of it once."""
        super().rollout_halted(session, rollout)
        admins = session.scalars(
            select(User).where(
                User.role == Role.ADMIN.value, User.disabled.is_(False), User.email.is_not(None)
            )
        ).all()
        context = {
            "rollout_id": rollout.id,
            "image": rollout.image,
            "message": rollout.message,
            "admin_url": f"{self.settings.public_url}/admin/rollouts/{rollout.id}",
        }
        for admin in admins:
            mail.enqueue(
                session,
                "rollout_halted",
                admin.email,
                {**context, "name": admin.name or "operator"},
                user_id=admin.id,
                dedupe_key=f"rollout_halted:{rollout.id}:{admin.id}",
            )

    def should_alert(self, session: Session, instance_id: str, healthy: bool) -> bool:
        with session.no_autoflush:
            last = session.scalar(
                select(OutboxEmail)
                .where(OutboxEmail.instance_id == instance_id, OutboxEmail.kind.in_(HEALTH_KINDS))
                .order_by(OutboxEmail.id.desc())
                .limit(1)
            )
            if healthy:
                return last is not None and last.kind == "health_down"
            if last is not None and last.kind == "health_down":
                return False
            window = utcnow() - timedelta(minutes=self.settings.alert_debounce_minutes)
            recent_down = session.scalar(
                select(OutboxEmail.id)
                .where(
                    OutboxEmail.instance_id == instance_id,
                    OutboxEmail.kind == "health_down",
                    OutboxEmail.created_at >= window,
                )
                .limit(1)
            )
            return recent_down is None
