"""`clawdet worker`: N reconcilers in threads, a periodic fleet scan, the rollouts' steps, and a
clean stop: on SIGTERM no new work is claimed, running operations finish and release their
leases."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from clawdet.instances import leases
from clawdet.mail.outbox import MailSender
from clawdet.reconciler import fleet
from clawdet.reconciler.reconciler import Reconciler, ReconcilerConfig, worker_name
from clawdet.reconciler.stacks import Stacks
from clawdet.rollouts import driver as rollouts
from clawdet.settings import Settings
from db.engine import Database

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        concurrency: int = 1,
        poll_interval: float = 1.0,
        scan_interval: float = 60.0,
        rollout_interval: float = 2.0,
        config: ReconcilerConfig | None = None,
        stacks: Stacks | None = None,
        notifier=None,
    ):
        self.stop = threading.Event()
        first = Reconciler(settings, database, config=config, stacks=stacks, notifier=notifier)
        self.reconcilers = [first] + [
            Reconciler(
                settings, database, config=config, stacks=first.stacks, notifier=notifier, owner=worker_name()
            )
            for _ in range(concurrency - 1)
        ]
        self.database = database
        self.target = first.target
        self.notifier = first.notifier
        self.poll_interval = poll_interval
        self.scan_interval = scan_interval
        self.rollout_interval = rollout_interval
        self.mail = MailSender(settings, database)
        self.threads: list[threading.Thread] = []

    def start(self) -> Worker:
        for n, reconciler in enumerate(self.reconcilers):
            thread = threading.Thread(
                target=self._loop, args=(reconciler,), name=f"reconciler-{n}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        if self.scan_interval > 0:
            thread = threading.Thread(target=self._scan_loop, name="fleet-scan", daemon=True)
            thread.start()
            self.threads.append(thread)
        if self.rollout_interval > 0:
            thread = threading.Thread(target=self._rollout_loop, name="rollouts", daemon=True)
            thread.start()
            self.threads.append(thread)
        self.mail.start()
        return self

    def _loop(self, reconciler: Reconciler) -> None:
        while not self.stop.is_set():
            try:
                worked = reconciler.run_once()
            except Exception:
                log.exception("reconciler loop error")
                worked = False
            if not worked:
                self.stop.wait(self.poll_interval)

    def _scan_loop(self) -> None:
        """One fleet scan a period for the whole fleet: the worker that claims the period runs it."""
        every = timedelta(seconds=self.scan_interval * 0.9)  # a loop that wakes a little early still counts
        owner = self.reconcilers[0].owner
        while not self.stop.wait(self.scan_interval):
            try:
                with self.database.sessions() as session:
                    if not leases.claim_period(session, "fleet-scan", owner, every):
                        continue
                report = fleet.scan(self.database, self.target, unhealthy_after=2, notifier=self.notifier)
                if report.drifted:
                    log.warning(
                        "fleet scan: %d of %d instances drifted", len(report.drifted), len(report.findings)
                    )
            except Exception:
                log.exception("fleet scan failed")

    def _rollout_loop(self) -> None:
        """Advance running rollouts: start the next wave's updates when the last one passed."""
        while not self.stop.wait(self.rollout_interval):
            try:
                rollouts.advance(self.database, on_halt=self.notifier.rollout_halted)
            except Exception:
                log.exception("rollout step failed")

    def shutdown(self, timeout: float | None = None, *, abort: bool = False) -> None:
        """Claim nothing new; wait for running operations to finish and release their leases.
        `abort` also cuts short a wait for a gateway (the operation is retried later)."""
        self.stop.set()
        self.mail.shutdown(timeout)
        if abort:
            for reconciler in self.reconcilers:
                reconciler.stop.set()
        for thread in self.threads:
            thread.join(timeout)

    def wait(self) -> None:
        while any(t.is_alive() for t in self.threads):
            for thread in self.threads:
                thread.join(0.5)
