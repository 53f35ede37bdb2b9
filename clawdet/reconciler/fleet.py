"""The fleet scan: drift detection that doubles as health reconciliation.

A few paginated API calls list every managed server and every DNS record of the zone; every
gateway's /healthz is probed concurrently. Only the instances whose server, record or gateway
diverges are marked for repair; the reconciler does the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import select

from clawdet import cloud
from clawdet.instances import lifecycle
from clawdet.instances.lifecycle import Action, DesiredState, Health, InstanceStatus
from clawdet.instances.notify import Notifier
from clawdet.ops import metrics as ops_metrics
from clawdet.reconciler.health import Probe, probe_all
from db.engine import Database
from db.models import Instance, utcnow
from programs import naming


@dataclass
class Finding:
    instance_id: str
    stack_name: str
    problems: list[str]
    action: str | None  # "repair" (up with refresh), "reboot", None (healthy)
    probe: Probe | None = None


@dataclass
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    api_calls: int = 0
    seconds: float = 0.0
    orphans: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[Finding]:
        return [f for f in self.findings if f.action]


def scan(
    database: Database,
    target: cloud.CloudTarget,
    *,
    only: str | None = None,
    mark: bool = True,
    unhealthy_after: int = 1,
    notifier: Notifier | None = None,
) -> ScanReport:
    """`notifier` hears of health changes when `mark` is set (the reconciler's, usually)."""
    started = time.perf_counter()
    with database.sessions() as session:
        query = select(Instance).where(
            Instance.desired_state == DesiredState.RUNNING.value,
            Instance.status == InstanceStatus.READY.value,
        )
        if only:
            query = query.where(Instance.stack_name == only)
        instances = session.scalars(query).all()
        session.expunge_all()

    hetzner, cloudflare_api = cloud.clients(target)
    try:
        servers = hetzner.servers(f"{naming.MANAGED_LABEL}=clawdet")
        records: dict[str, list[dict]] = {}
        for record in cloudflare_api.records(target.zone_id):
            records.setdefault(record["name"], []).append(record)
    finally:
        api_calls = hetzner.calls + cloudflare_api.calls
        hetzner.close(), cloudflare_api.close()

    urls = {
        i.id: target.health_url(fqdn=f"{i.subdomain}.{target.base_domain}", ipv4=i.ipv4) for i in instances
    }
    probes = probe_all([u for u in urls.values() if u])
    report = ScanReport(api_calls=api_calls)
    servers_of = ServersOf(database.installation_id, instances, servers)
    if not only:
        report.orphans = servers_of.orphans()
    for instance in instances:
        finding = diagnose(
            instance,
            target,
            servers_of.instance(instance),
            records.get(f"{instance.subdomain}.{target.base_domain}", []),
            probes.get(urls[instance.id]) if urls[instance.id] else None,
        )
        report.findings.append(finding)
    report.seconds = time.perf_counter() - started
    if mark:
        record_findings(database, report, unhealthy_after, notifier)
        ops_metrics.observe_scan(database, report)
    return report


class ServersOf:
    """Which listed servers are this installation's, and whose. A server is ours by its
    installation label, or, made before that label, by the id its instance's row holds (its
    next update labels it); never by name, which another installation may use too."""

    def __init__(self, installation_id: str, instances: list[Instance], servers: list[dict]):
        self.installation_id = installation_id
        self.by_instance_id: dict[str, dict] = {}
        self.by_server_id: dict[str, dict] = {}
        known_server_ids = {i.server_id for i in instances if i.server_id}
        for server in servers:
            labels = server.get("labels") or {}
            installation = labels.get(naming.INSTALLATION_LABEL)
            if installation == installation_id:
                if naming.POOL_LABEL not in labels:  # a warm-pool member is nobody's orphan
                    self.by_instance_id[labels.get(naming.INSTANCE_ID_LABEL, "")] = server
            elif installation is not None or str(server["id"]) not in known_server_ids:
                continue
            self.by_server_id[str(server["id"])] = server
        self.known_ids = {i.id for i in instances}

    def instance(self, instance: Instance) -> dict | None:
        # The id the row holds first: an unswept duplicate may carry the same labels.
        return self.by_server_id.get(instance.server_id or "") or self.by_instance_id.get(instance.id)

    def orphans(self) -> list[str]:
        """Our servers no running instance claims (reported, never deleted here)."""
        return sorted(
            server["name"]
            for instance_id, server in self.by_instance_id.items()
            if instance_id not in self.known_ids
        )


def diagnose(
    instance: Instance,
    target: cloud.CloudTarget,
    server: dict | None,
    records: list[dict],
    probe: Probe | None,
) -> Finding:
    problems: list[str] = []
    infra = False
    if server is None:
        problems.append("server is missing")
        infra = True
    elif server.get("status") != "running":
        problems.append(f"server is {server.get('status')}")
        infra = True
    a_records = [r for r in records if r.get("type") == "A"]
    if not a_records:
        problems.append("DNS record is missing")
        infra = True
    else:
        ipv4 = (server or {}).get("public_net", {}).get("ipv4", {}).get("ip") or instance.ipv4
        wrong = [r["content"] for r in a_records if r.get("content") != ipv4]
        if wrong:
            problems.append(f"DNS record points to {', '.join(wrong)}, not {ipv4}")
            infra = True
    if probe is not None and not probe.ok and not infra:
        problems.append(f"gateway is not answering ({probe.error or probe.status})")
    action = Action.REPAIR.value if infra else Action.REBOOT.value if problems else None
    return Finding(instance.id, instance.stack_name, problems, action, probe)


def record_findings(
    database: Database, report: ScanReport, unhealthy_after: int, notifier: Notifier | None
) -> None:
    now = utcnow()
    with database.session() as session:
        for finding in report.findings:
            instance = session.get(Instance, finding.instance_id)
            if instance is None or instance.status != InstanceStatus.READY.value:
                continue  # changed since we looked; the reconciler owns it now
            flipped = lifecycle.health_observed(instance, finding.action is None, unhealthy_after, now)
            if flipped is not None and notifier:
                notifier.health_changed(session, instance, flipped)
            if finding.action is not None and instance.health == Health.UNHEALTHY.value:
                lifecycle.drift_found(session, instance, Action(finding.action), finding.problems)
