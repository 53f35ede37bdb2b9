"""`/metrics` for Prometheus.

HTTP requests are counted in this web process (prometheus-client's registry). Everything about
the fleet comes from the database at scrape time: gauges (instances by status, the work queue,
the outbox) are computed, and the worker processes' counters and histograms are read from the
`ops_counters` rows they write (see clawdet/ops/metrics.py), so any number of web and worker
processes on any number of machines report one consistent picture.
"""

from __future__ import annotations

import time
from collections import defaultdict

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select

from clawdet.ops import metrics as ops_metrics
from clawdet.rollouts import ACTIVE, RolloutStatus
from db.engine import Database
from db.models import Instance, LlmUsage, OutboxEmail, Rollout, RolloutInstance, utcnow

bp = Blueprint("metrics", __name__)

HTTP_REQUESTS = Counter(
    "clawdet_http_requests",
    "HTTP requests by route, method and status",
    ["route", "method", "status"],
    registry=None,
)
HTTP_SECONDS = Histogram(
    "clawdet_http_request_duration_seconds", "HTTP request duration by route", ["route"], registry=None
)

HELP = {
    "clawdet_reconcile": "Reconcile operations by kind and outcome",
    "clawdet_reconcile_duration_seconds": "Reconcile operation duration",
    "clawdet_drift_found": "Drift the fleet scan found, by the action it asked for",
    "clawdet_drift_repaired": "Drift repaired by a repair or restart operation",
    "clawdet_fleet_scans": "Fleet scans run",
    "clawdet_health_probe_seconds": "Gateway /healthz probe latency in fleet scans",
    "clawdet_health_alerts": "Health alerts by kind and whether the debounce let them through",
    "clawdet_emails_sent": "Emails delivered to the SMTP server, by kind",
    "clawdet_emails_failed": "Emails given up after the last attempt, by kind",
    "clawdet_rollout_instances": "Rollout updates finished, by outcome (passed, rolled_back)",
}
UNFINISHED_ROLLOUTS = (*ACTIVE, RolloutStatus.HALTED.value)


class DatabaseCollector:
    def __init__(self, database: Database):
        self.database = database

    def collect(self):
        with self.database.sessions() as session:
            yield from self._instances(session)
            yield from self._queue(session)
            yield from self._outbox(session)
            yield from self._rollouts(session)
            yield from self._tokens(session)
            yield from self._worker_counters(session)
            yield from self._backups(session)
            yield from self._warm_pool(session)

    def _instances(self, session):
        family = GaugeMetricFamily(
            "clawdet_instances", "Instances by status and health", labels=["status", "health"]
        )
        for status, health, count in session.execute(
            select(Instance.status, Instance.health, func.count()).group_by(Instance.status, Instance.health)
        ):
            family.add_metric([status, health], count)
        yield family

    def _queue(self, session):
        from clawdet.instances import leases

        now = utcnow()
        family = GaugeMetricFamily(
            "clawdet_work_queue", "Instances waiting for, or held by, a worker", labels=["state"]
        )
        pending = session.scalar(
            select(func.count())
            .select_from(Instance)
            .where(leases.needs_work(), Instance.lease_owner.is_(None))
        )
        leased = session.scalar(
            select(func.count())
            .select_from(Instance)
            .where(Instance.lease_owner.is_not(None), Instance.lease_expires_at > now)
        )
        failed = session.scalar(select(func.count()).select_from(Instance).where(Instance.status == "failed"))
        for state, value in (("pending", pending), ("leased", leased), ("failed", failed)):
            family.add_metric([state], value or 0)
        yield family

    def _outbox(self, session):
        family = GaugeMetricFamily(
            "clawdet_outbox_emails", "Emails in the outbox by status", labels=["status"]
        )
        for status, count in session.execute(
            select(OutboxEmail.status, func.count()).group_by(OutboxEmail.status)
        ):
            family.add_metric([status], count)
        yield family

    def _rollouts(self, session):
        family = GaugeMetricFamily("clawdet_rollouts", "Rollouts by status", labels=["status"])
        counts = dict(session.execute(select(Rollout.status, func.count()).group_by(Rollout.status)).all())
        for status in RolloutStatus:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family
        members = GaugeMetricFamily(
            "clawdet_rollout_members",
            "Instances of the running, paused or halted rollouts by state",
            labels=["rollout", "state"],
        )
        for rollout_id, state, count in session.execute(
            select(RolloutInstance.rollout_id, RolloutInstance.state, func.count())
            .join(Rollout)
            .where(Rollout.status.in_(UNFINISHED_ROLLOUTS))
            .group_by(RolloutInstance.rollout_id, RolloutInstance.state)
        ):
            members.add_metric([rollout_id, state], count)
        yield members

    def _tokens(self, session):
        family = CounterMetricFamily(
            "clawdet_llm_tokens", "LLM tokens through the proxy by model and kind", labels=["model", "kind"]
        )
        for model, prompt, completion in session.execute(
            select(
                LlmUsage.model, func.sum(LlmUsage.prompt_tokens), func.sum(LlmUsage.completion_tokens)
            ).group_by(LlmUsage.model)
        ):
            family.add_metric([model, "prompt"], int(prompt or 0))
            family.add_metric([model, "completion"], int(completion or 0))
        yield family

    def _backups(self, session):
        from clawdet.backups import nightly
        from db.models import Backup

        stored = GaugeMetricFamily(
            "clawdet_backups", "Customer backups by kind and status", labels=["kind", "status"]
        )
        for kind, status, count in session.execute(
            select(Backup.kind, Backup.status, func.count()).group_by(Backup.kind, Backup.status)
        ):
            stored.add_metric([kind, status], count)
        yield stored
        health = nightly.backup_health(session)
        alerts = GaugeMetricFamily(
            "clawdet_backup_alerts",
            "Ready instances whose latest nightly backup failed, or that missed a night",
            labels=["problem"],
        )
        alerts.add_metric(["failed"], len(health.failed))
        alerts.add_metric(["missing"], len(health.missing))
        yield alerts

    def _warm_pool(self, session):
        from db.models import PoolServer

        family = GaugeMetricFamily(
            "clawdet_warm_pool_servers",
            "Warm-pool members not yet adopted, by tier, region and status",
            labels=["tier", "region", "status"],
        )
        for tier, region, status, count in session.execute(
            select(PoolServer.tier, PoolServer.region, PoolServer.status, func.count())
            .where(PoolServer.status != "adopted")
            .group_by(PoolServer.tier, PoolServer.region, PoolServer.status)
        ):
            family.add_metric([tier, region, status], count)
        yield family

    def _worker_counters(self, session):
        counters: dict[str, list] = defaultdict(list)
        histograms: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
        for row in ops_metrics.all_counters(session):
            labels = ops_metrics.parse_labels(row.labels)
            for suffix in ("_bucket", "_sum", "_count"):
                if row.name.endswith(suffix):
                    base = row.name[: -len(suffix)]
                    le = labels.pop("le", None)
                    key = tuple(sorted(labels.items()))
                    slot = histograms[base][key]
                    if suffix == "_bucket":
                        slot.setdefault("buckets", []).append((le, row.value))
                    else:
                        slot[suffix] = row.value
                    break
            else:
                counters[row.name.removesuffix("_total")].append((labels, row.value))
        for name, rows in counters.items():
            keys = sorted({k for labels, _ in rows for k in labels})
            family = CounterMetricFamily(name, HELP.get(name, name), labels=keys)
            for labels, value in rows:
                family.add_metric([labels.get(k, "") for k in keys], value)
            yield family
        for name, series in histograms.items():
            keys = sorted({k for key in series for k, _ in key})
            family = HistogramMetricFamily(name, HELP.get(name, name), labels=keys)
            for key, slot in series.items():
                labels = dict(key)
                buckets = sorted(
                    slot.get("buckets", []), key=lambda b: float("inf") if b[0] == "+Inf" else float(b[0])
                )
                family.add_metric([labels.get(k, "") for k in keys], buckets, slot.get("_sum", 0.0))
            yield family


@bp.get("/metrics")
def metrics():
    from flask import current_app

    from webapp import settings
    from webapp.security import from_this_machine, has_metrics_token

    token = settings().metrics_token
    if token and not has_metrics_token(token):
        return Response("metrics need the bearer token of METRICS_TOKEN\n", status=401, mimetype="text/plain")
    if not token and not from_this_machine():
        return Response(
            "metrics are served without a token only to this machine; set METRICS_TOKEN and send it "
            "as a bearer token to scrape from elsewhere\n",
            status=401,
            mimetype="text/plain",
        )
    registry = CollectorRegistry(auto_describe=False)
    for metric in (HTTP_REQUESTS, HTTP_SECONDS, current_app.extensions["clawdet.metrics"]):
        registry.register(metric)
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def install(app: Flask, database: Database) -> None:
    app.extensions["clawdet.metrics"] = DatabaseCollector(database)

    @app.before_request
    def _start_timer():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
        return response

    app.register_blueprint(bp)
