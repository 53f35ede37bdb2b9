"""The warm pool: booted servers waiting, so that a new instance adopts one instead of waiting
for a server to be made, to boot and to install.

A member is a stack of the instance program itself in pool mode (`pool_<id>`, config
`poolMember`): the firewall, the volume and a server booted from the newest golden snapshot (or
the stock image, pulling the app's images at boot), no DNS record, no app layer. Made by the same
program, its resources are what an instance of its tier and region would have made.

Adoption (Reconciler.converge of a new instance): `claim` hands one member to the instance; its
`up` imports the member's firewall, volume, attachment and server (`adoptFromPool`, the engine's
import) and creates the DNS record and the app layer; then the member's stack is forgotten
(`pulumi stack rm --force`: the resources are the instance's now) and a second `up` gives them
the instance's names and labels. An adoption that fails, or that a dead worker left, destroys
the member: a server that failed once is never handed out.

`keep` (a worker, once a period for the fleet) makes members up to WARM_POOL and retires the
outdated (another snapshot, OpenClaw image, platform setting or program: `config_digest`), the
surplus and the unwanted. Every destroy first takes the member (a conditional update to
`retiring`), so a member is never destroyed while it is being handed out, nor twice at once.
creating -> ready -> adopting -> adopted; ready -> retiring -> gone; a destroy that fails leaves
it `broken` (retried); a make that fails leaves a `discarded` row that holds its tier and region
back for FAILURE_BACKOFF (a broken image must not burn a server every pass).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

from sqlalchemy import delete, select, update

from clawdet import cloud
from clawdet.instances import leases
from clawdet.ops.warm_pool import WAITING, wanted
from db.engine import Database
from db.models import Instance, PoolServer, utcnow
from programs import naming

log = logging.getLogger(__name__)

STUCK_AFTER = timedelta(minutes=30)  # a member `creating` or `retiring` that long: its worker died
FAILURE_BACKOFF = timedelta(minutes=10)
FORGET_DISCARDED = timedelta(days=1)
FIREWALL_TYPE = "hcloud:index/firewall:Firewall"


def stack_name(member_id: str) -> str:
    """Not a subdomain (an underscore), so never an instance's stack name."""
    return f"pool_{member_id}"


@dataclasses.dataclass
class Report:
    made: list[str] = dataclasses.field(default_factory=list)
    retired: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)

    def line(self) -> str:
        return f"warm pool: {len(self.made)} made, {len(self.retired)} retired, {len(self.failed)} failed"


def keep(reconciler, *, stop=None) -> Report:
    """Make members up to WARM_POOL; retire the outdated, the surplus, the unwanted and the stuck."""
    report = Report()
    asked = wanted(reconciler.settings)
    _retire_left_behind(reconciler, asked, report)
    for (tier, region), count in asked.items():
        try:
            server_image, openclaw_image = reconciler.newest_images(region)
        except (cloud.ApiError, ValueError) as exc:  # never churn the pool over a failed lookup
            log.warning("warm pool: %s in %s left as it is, no snapshot lookup: %s", tier, region, exc)
            continue
        digest = reconciler.pool_config_digest(tier, region, server_image, openclaw_image)
        doomed, new = _plan(reconciler.database, tier, region, count, server_image, openclaw_image, digest)
        for member_id in doomed:
            if _take(reconciler.database, member_id, ("ready",)):
                _destroy(reconciler, member_id, report)
        for n, member_id in enumerate(new):
            _waiting(reconciler.database, new[n:])  # still planned, not stuck: their clocks restart
            stopping = stop is not None and stop.is_set()
            if stopping or not _make(reconciler, member_id, report):  # one failure holds the rest back
                _unplan(reconciler.database, new[n + (not stopping) :])
                break
    return report


def _waiting(database: Database, member_ids: list[str]) -> None:
    with database.session() as session:
        session.execute(
            update(PoolServer)
            .where(PoolServer.id.in_(member_ids), PoolServer.status == "creating")
            .values(updated_at=leases.database_now(session))
            .execution_options(synchronize_session=False)
        )


def _unplan(database: Database, member_ids: list[str]) -> None:
    """Rows planned by this pass and not made: gone (a stop, or a failure backing off)."""
    if member_ids:
        with database.session() as session:
            session.execute(
                delete(PoolServer).where(
                    PoolServer.id.in_(member_ids),
                    PoolServer.status == "creating",
                    PoolServer.server_id.is_(None),
                )
            )


def _plan(database, tier, region, count, server_image, openclaw_image, digest) -> tuple[list[str], list[str]]:
    """Which ready members go (outdated, then the newest beyond `count`), and the rows of those
    to make, inserted at once: a pass running beside this one counts them."""
    with database.session() as session:
        now = leases.database_now(session)
        members = session.scalars(
            select(PoolServer)
            .where(PoolServer.tier == tier, PoolServer.region == region)
            .order_by(PoolServer.created_at)
        ).all()
        outdated = [m.id for m in members if m.status == "ready" and m.config_digest != digest]
        current = [m for m in members if m.status in WAITING and m.id not in outdated]
        surplus = [m.id for m in current if m.status == "ready"][::-1][: max(0, len(current) - count)]
        backing_off = any(m.status == "discarded" and now - m.updated_at < FAILURE_BACKOFF for m in members)
        missing = 0 if backing_off else max(0, count - len(current))
        rows = [
            PoolServer(
                tier=tier,
                region=region,
                server_image=server_image,
                openclaw_image=openclaw_image,
                config_digest=digest,
                message="",
                updated_at=now,
            )
            for _ in range(missing)
        ]
        session.add_all(rows)
        session.flush()
        return outdated + surplus, [row.id for row in rows]


def _retire_left_behind(reconciler, asked: dict[tuple[str, str], int], report: Report) -> None:
    """Destroy members no one will finish: unwanted, `broken`, or left `creating`/`retiring` by a
    dead worker (its stack lock too); forget old `discarded` rows."""
    database = reconciler.database
    with database.session() as session:
        now = leases.database_now(session)
        session.execute(
            delete(PoolServer).where(
                PoolServer.status == "discarded", PoolServer.updated_at < now - FORGET_DISCARDED
            )
        )
        members = session.scalars(
            select(PoolServer).where(PoolServer.status.in_(("ready", "creating", "retiring", "broken")))
        ).all()
        stale = {
            m.id for m in members if m.status in ("creating", "retiring") and now - m.updated_at > STUCK_AFTER
        }
        left = [
            (m.id, m.status)
            for m in members
            if (m.status == "ready" and not asked.get((m.tier, m.region)))
            or (m.status == "broken" and now - m.updated_at > FAILURE_BACKOFF)
            or m.id in stale
        ]
    for member_id, status in left:
        if _take(database, member_id, (status,)):
            _destroy(reconciler, member_id, report, dead_owner=member_id in stale)


def _take(database: Database, member_id: str, statuses: tuple[str, ...]) -> bool:
    """This worker retires the member, if it still is in one of `statuses` (a conditional
    update: a member handed out or taken by another worker meanwhile is left alone)."""
    with database.session() as session:
        now = leases.database_now(session)
        return bool(
            session.execute(
                update(PoolServer)
                .where(PoolServer.id == member_id, PoolServer.status.in_(statuses))
                .values(status="retiring", updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
        )


def _make(reconciler, member_id: str, report: Report) -> bool:
    """Make one planned member; whether it did (a member taken meanwhile is left alone)."""
    from clawdet.reconciler.reconciler import short_reason

    name = stack_name(member_id)
    if not _still(reconciler.database, member_id, "creating"):  # and its clock starts now
        return True
    with reconciler.database.sessions() as session:
        member = session.get(PoolServer, member_id)
        log.info(
            "warm pool: making %s (%s in %s, image %s)", name, member.tier, member.region, member.server_image
        )
        config = reconciler.pool_member_config(member)
    try:
        outputs = reconciler.stacks.up(name, config)
        firewall_id = next(
            str(r["id"]) for r in reconciler.stacks.resources(name) if r.get("type") == FIREWALL_TYPE
        )
    except Exception as exc:
        log.warning("warm pool: %s failed: %s", name, short_reason(exc))
        if _take(reconciler.database, member_id, ("creating",)):
            _destroy(reconciler, member_id, report, reason=short_reason(exc))
        report.failed.append(member_id)
        return False
    with reconciler.database.session() as session:
        now = leases.database_now(session)
        made = session.execute(
            update(PoolServer)
            .where(PoolServer.id == member_id, PoolServer.status == "creating")
            .values(
                server_id=outputs.server_id,
                volume_id=outputs.volume_id,
                ipv4=outputs.ipv4,
                firewall_id=firewall_id,
                status="ready",
                ready_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
    if made:
        report.made.append(member_id)
    else:  # taken as stuck meanwhile (a make past STUCK_AFTER): that worker destroys it
        log.warning("warm pool: %s was taken while it was being made; not handed out", name)
    return True


def _still(database: Database, member_id: str, status: str) -> bool:
    """Whether the member still is in `status`; its status clock restarts if so."""
    with database.session() as session:
        now = leases.database_now(session)
        return bool(
            session.execute(
                update(PoolServer)
                .where(PoolServer.id == member_id, PoolServer.status == status)
                .values(updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
        )


def _destroy(
    reconciler, member_id: str, report: Report, *, reason: str = "", dead_owner: bool = False
) -> bool:
    """Delete a member taken for retiring: its stack, then anything labelled as it that the stack
    lost track of. Gone: the row goes (or stays `discarded` with `reason`, a failed make). A
    destroy that fails leaves it `broken`, for the next pass."""
    from clawdet.reconciler.reconciler import short_reason

    name = stack_name(member_id)
    try:
        if dead_owner:
            reconciler.stacks.clear_stale_lock(name)
        reconciler.stacks.destroy(name)
        _sweep_labelled(reconciler, member_id)
    except Exception as exc:
        log.warning("warm pool: destroying %s failed: %s", name, short_reason(exc))
        _set(reconciler.database, member_id, "broken", short_reason(exc))
        return False
    with reconciler.database.sessions() as session:
        member = session.get(PoolServer, member_id)
        never_ready = member is not None and member.ready_at is None and member.instance_id is None
        message = reason or (member.message if member is not None else "") or "not made"
    if reason or never_ready:  # a failed make: its tier and region back off (FAILURE_BACKOFF)
        _set(reconciler.database, member_id, "discarded", message)
    else:
        with reconciler.database.session() as session:
            session.execute(delete(PoolServer).where(PoolServer.id == member_id))
        report.retired.append(member_id)
    return True


def _set(database: Database, member_id: str, status: str, message: str) -> None:
    with database.session() as session:
        member = session.get(PoolServer, member_id)
        if member is not None:
            member.status, member.message = status, message
            member.updated_at = leases.database_now(session)


def _sweep_labelled(reconciler, member_id: str) -> None:
    """What a dead `up` made after its last checkpoint carries the member's label only."""
    selector = f"{naming.ours(reconciler.database.installation_id)},{naming.POOL_LABEL}={member_id}"
    hetzner = cloud.Hetzner(reconciler.target.hcloud_endpoint, reconciler.target.hcloud_token)
    try:
        for server in hetzner.servers(selector):
            hetzner.delete_server(server["id"])
        for volume in hetzner.volumes(selector):
            hetzner.delete_volume(volume["id"])
        for firewall in hetzner.firewalls(selector):
            hetzner.delete_firewall(firewall["id"])
    finally:
        hetzner.close()


def claim(database: Database, instance_id: str, openclaw_image: str) -> PoolServer | None:
    """Hand a ready member that fits (tier, region, image) to a new instance, oldest first; the
    conditional update makes two claims of the same member impossible."""
    with database.session() as session:
        instance = session.get(Instance, instance_id)
        candidates = session.scalars(
            select(PoolServer)
            .where(
                PoolServer.status == "ready",
                PoolServer.tier == instance.tier,
                PoolServer.region == instance.region,
                PoolServer.openclaw_image == openclaw_image,
                *([PoolServer.server_image == instance.server_image] if instance.server_image else []),
            )
            .order_by(PoolServer.ready_at)
        ).all()
        for member in candidates:
            taken = session.execute(
                update(PoolServer)
                .where(PoolServer.id == member.id, PoolServer.status == "ready")
                .values(status="adopting", instance_id=instance_id, claimed_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount
            if taken:
                instance.adopted_from, instance.server_image = member.id, member.server_image
                session.expunge(member)
                return member
    return None


def import_ids(member: PoolServer) -> str:
    return f"{member.server_id},{member.volume_id},{member.firewall_id}"


def still_adopted(member: PoolServer, server_id: str | None, replacing_server: bool) -> list[str] | None:
    """What of an instance is still the member it adopted: the volume for good, the server until
    it is replaced (a rebuild makes the new one in full, user data included)."""
    if member.status != "adopted":
        return None
    return ["volume"] + (["server"] if server_id == member.server_id and not replacing_server else [])


def adopted(reconciler, member_id: str) -> None:
    """The instance's stack holds the member's resources now: forget the member's stack."""
    reconciler.stacks.forget(stack_name(member_id))
    with reconciler.database.session() as session:
        member = session.get(PoolServer, member_id)
        member.status = "adopted"


def adoption_failed(reconciler, instance_id: str, member_id: str) -> None:
    """Destroy the member (its resources may be in the instance's stack already: a refresh then
    drops them there) and let the instance be made afresh. Safe at any point of an adoption:
    the instance is not ready before its member is `adopted`, so it holds no data yet."""
    taken = _take(reconciler.database, member_id, ("adopting", "broken"))
    with reconciler.database.sessions() as session:
        elsewhere = not taken and session.get(PoolServer, member_id) is not None
    if elsewhere or (taken and not _destroy(reconciler, member_id, Report())):
        raise RuntimeError(f"the warm-pool member {stack_name(member_id)} is not destroyed yet; later")
    with reconciler.database.session() as session:
        instance = session.get(Instance, instance_id)
        instance.adopted_from, instance.server_image = None, None
        name = instance.stack_name
    reconciler.stacks.refresh(name)
