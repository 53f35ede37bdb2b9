"""`clawdet worker`: N reconcilers in threads, a periodic fleet scan, the rollouts' steps, and a
clean stop: on SIGTERM no new work is claimed, running operations finish and release their
leases."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from clawdet.accounts import throttle
from clawdet.instances import leases
from clawdet.mail.outbox import MailSender
from clawdet.ops import platform_health
from clawdet.ops.warm_pool import wanted
from clawdet.reconciler import fleet, pool
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
        check_interval: float = platform_health.REPORT_SECONDS,
        rollout_interval: float = 2.0,
        backup_interval: float = 300.0,
        pool_interval: float = 30.0,
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
        self.check_interval = check_interval
        self.rollout_interval = rollout_interval
        self.backup_interval = backup_interval
        self.pool_interval = pool_interval
        self.pool_wanted = wanted(settings)  # a bad WARM_POOL stops the worker here, clearly
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
        if self.backup_interval > 0:
            for target, name in ((self._backups_loop, "nightly-backups"), (self._restores_loop, "restores")):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self.threads.append(thread)
        if self.pool_interval > 0:  # also with WARM_POOL unset: members left from before are retired
            thread = threading.Thread(target=self._pool_loop, name="warm-pool", daemon=True)
            thread.start()
            self.threads.append(thread)
        if self.check_interval > 0:
            thread = threading.Thread(target=self._checks_loop, name="platform-checks", daemon=True)
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

    def _backups_loop(self) -> None:
        """The nightly backups: one pass a period for the fleet, each instance at its own moment."""
        from clawdet.backups import nightly
        from clawdet.backups.store import StoreError

        every = timedelta(seconds=self.backup_interval * 0.9)
        first = self.reconcilers[0]
        while not self.stop.wait(self.backup_interval):
            try:
                with self.database.sessions() as session:
                    if not leases.claim_period(session, "nightly-backups", first.owner, every):
                        continue
                report = nightly.run(first.settings, self.database, stop=self.stop)
                if report.made or report.failed:
                    log.info(report.line())
            except StoreError as exc:
                log.warning("nightly backups skipped: %s", exc.message)
            except Exception:
                log.exception("nightly backups failed")

    def _restores_loop(self) -> None:
        """Owners' restores and exports, each run once by whichever worker claims it."""
        from clawdet.backups import requests as backup_requests

        settings = self.reconcilers[0].settings
        while not self.stop.wait(self.poll_interval * 2):
            try:
                while not self.stop.is_set() and backup_requests.run_next(settings, self.database):
                    pass
            except Exception:
                log.exception("backup requests failed")

    def _checks_loop(self) -> None:
        """Once a period for the fleet, at once and then on: the state backend's and the clouds'
        health for the web app (the web tier holds no credentials to check them itself), and
        sign-in failures old enough to forget."""
        every = timedelta(seconds=self.check_interval * 0.9)
        first = self.reconcilers[0]
        while True:
            claimed = False
            try:
                with self.database.sessions() as session:
                    claimed = leases.claim_period(session, "platform-checks", first.owner, every)
                if claimed:
                    platform_health.report(first.settings, self.database)
            except Exception:
                log.exception("platform checks failed")
            try:
                if claimed:
                    with self.database.session() as session:
                        throttle.prune(session, leases.database_now(session))
            except Exception:
                log.exception("forgetting old sign-in failures failed")
            if self.stop.wait(self.check_interval):
                return

    def _pool_loop(self) -> None:
        """The warm pool at its size: one worker a period makes and retires members (each
        member it is making counts, so another worker's pass never makes it twice)."""
        every = timedelta(seconds=self.pool_interval * 0.9)
        first = self.reconcilers[0]
        while not self.stop.is_set():
            try:
                with self.database.sessions() as session:
                    claimed = leases.claim_period(session, "warm-pool", first.owner, every)
                if claimed:
                    report = pool.keep(first, stop=self.stop)
                    if report.made or report.retired or report.failed:
                        log.info(report.line())
            except Exception:
                log.exception("keeping the warm pool failed")
            if self.stop.wait(self.pool_interval):
                return

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
