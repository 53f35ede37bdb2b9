"""The reconciler: claim an instance whose observed state lags its desired state, converge its
stack, and record every step as an instance event the dashboard streams."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta

from pulumi import automation as auto
from sqlalchemy.orm import object_session

from clawdet import cloud
from clawdet.backups import final as final_backup
from clawdet.errors import UserFacingError
from clawdet.instances import credentials, leases, lifecycle
from clawdet.instances.lifecycle import Action, DesiredState, EventKind, InstanceStatus, RetryPolicy
from clawdet.instances.notify import Notifier
from clawdet.mail.notifier import EmailNotifier
from clawdet.ops import observed
from clawdet.reconciler import golden, pool
from clawdet.reconciler.health import GatewayNotAnswering, chat_check, wait_healthy
from clawdet.reconciler.stacks import Stacks
from clawdet.rollouts import outcome as rollout_outcome
from clawdet.settings import Settings
from db.engine import Database
from db.models import Instance, PoolServer
from programs import naming, tiers
from programs.instance_config import (
    DEFAULT_OPENCLAW_IMAGE,
    DEFAULT_SERVER_IMAGE,
    KEYS_BY_FIELD,
    digest_pinned_image,
    infrastructure_digest,
    to_stack_config,
)

log = logging.getLogger(__name__)

SERVER_TYPE = "hcloud:index/server:Server"
FIREWALL_TYPE = "hcloud:index/firewall:Firewall"
VOLUME_TYPE = "hcloud:index/volume:Volume"
DNS_TYPE = "cloudflare:index/dnsRecord:DnsRecord"
RELEASE_TYPE = "command:remote:CopyToRemote"
DEPLOY_TYPE = "command:remote:Command"

STEP_OF_TYPE = {
    FIREWALL_TYPE: "firewall",
    VOLUME_TYPE: "volume",
    SERVER_TYPE: "server",
    RELEASE_TYPE: "deploy",
    DEPLOY_TYPE: "deploy",
    DNS_TYPE: "dns",
}
STEP_WORDS = {
    "firewall": "the firewall",
    "volume": "your data volume",
    "server": "your server",
    "deploy": "your gateway's configuration",
    "dns": "the DNS record",
}


@dataclass(frozen=True)
class ReconcilerConfig:
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 4
    backoff_base: float = 5.0
    backoff_cap: float = 300.0
    ready_deadline: float = 600.0

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.backoff_base, self.backoff_cap)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        config: ReconcilerConfig | None = None,
        stacks: Stacks | None = None,
        notifier: Notifier | None = None,
        owner: str | None = None,
    ):
        self.settings = settings
        self.database = database
        self.config = config or ReconcilerConfig()
        self.target = stacks.target if stacks else cloud.resolve(settings)
        self.stacks = stacks or Stacks(settings, self.target)
        self.roots = credentials.Roots.of(settings)
        if not self.target.sandbox:
            self.refuse_host_secrets()
            self.refuse_images_without_digest()
        self.notifier = notifier or EmailNotifier(settings)
        self.owner = owner or worker_name()
        self.stop = threading.Event()
        self.lease_lost = threading.Event()

    # -- the loop ---------------------------------------------------------------------------

    def run_once(self, only: str | None = None) -> bool:
        """Claim and work one due instance; False when there was nothing to do."""
        with self.database.sessions() as session:
            claim = leases.claim_next(session, self.owner, self.config.lease, only=only)
        if claim is None:
            return False
        done, self.lease_lost = threading.Event(), threading.Event()
        self.stacks.command.unfence(threading.get_ident())
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(claim.instance_id, done, threading.get_ident()), daemon=True
        )
        heartbeat.start()
        try:
            self.work(claim)
        finally:
            done.set()
            if self.lease_lost.is_set():
                # Left to expire: the next claim is a takeover (lock cleared, orphans swept).
                log.warning("leaving the lease of %s to expire", claim.instance_id)
            else:
                try:
                    with self.database.sessions() as session:
                        leases.release(session, claim.instance_id, self.owner)
                except Exception:
                    log.exception("could not release the lease of %s; it expires", claim.instance_id)
        return True

    def drain(self, only: str | None = None) -> int:
        """Work until nothing is due (or stop is set); how many operations ran."""
        count = 0
        while not self.stop.is_set() and self.run_once(only):
            count += 1
        return count

    def _heartbeat(self, instance_id: str, done: threading.Event, worker_thread: int) -> None:
        """Renew the lease while the operation runs; a database blip is retried. The fence: a
        worker that has not renewed for two thirds of a lease (a database outage, a network
        split) stops its engine before the lease can end, and a lease taken by another worker
        stops it at once; either way it writes no final state."""
        lease = self.config.lease.total_seconds()

        def fence(reason: str) -> None:
            if done.is_set() or self.lease_lost.is_set():
                return
            log.error("%s %s; stopping its engine and writing nothing more", reason, instance_id)
            self.lease_lost.set()
            self.stacks.command.fence(worker_thread, grace=lease / 6)

        def in_doubt() -> threading.Timer:
            timer = threading.Timer(lease * 2 / 3, fence, ("could not renew the lease of",))
            timer.daemon = True
            timer.start()
            return timer

        timer, wait = in_doubt(), lease / 3
        try:
            while not done.wait(wait):
                try:
                    with self.database.sessions() as session:
                        renewed = leases.renew(session, instance_id, self.owner, self.config.lease)
                except Exception:
                    log.exception("could not renew the lease of %s; trying again", instance_id)
                    wait = lease / 12  # several tries before the fence, not one
                    continue
                wait = lease / 3
                if not renewed:
                    fence("another worker holds the lease of")
                    return
                timer.cancel()
                timer = in_doubt()
        finally:
            timer.cancel()

    def _cancelled(self) -> bool:
        return self.stop.is_set() or self.lease_lost.is_set()

    def _own(self, instance: Instance) -> bool:
        if self.lease_lost.is_set():
            log.error("the lease of %s is in doubt; not writing its outcome", instance.id)
            return False
        if instance.lease_owner == self.owner:
            return True
        log.error(
            "instance %s is leased by %s now; not writing its outcome", instance.id, instance.lease_owner
        )
        return False

    # -- one operation ----------------------------------------------------------------------

    def work(self, claim: leases.Claim) -> None:
        """One operation, its log lines tagged with the request that asked for it."""
        with observed.operation(self.database, claim.instance_id):
            self._work(claim)

    def _work(self, claim: leases.Claim) -> None:
        with self.database.sessions() as session:
            instance = session.get(Instance, claim.instance_id)
            name, desired, action = instance.stack_name, instance.desired_state, instance.requested_action
            if instance.generation > instance.observed_generation and action == Action.REBOOT:
                action = None  # a new desired state (say, a rotated key) comes first
        if claim.taken_over_from:
            self.event(
                claim.instance_id, "recovery", "Picked up where a stopped worker left off", kind=EventKind.LOG
            )
            try:
                self.stacks.clear_stale_lock(name)
            except Exception as exc:
                log.error("could not clear the Pulumi lock of %s (%s); trying later", name, short_reason(exc))
                self.lease_lost.set()  # left to expire: the next claim is a takeover again
                return
        try:
            if desired == DesiredState.DESTROYED.value:
                self.destroy(claim.instance_id)
            elif action == Action.REBOOT:
                self.reboot(claim.instance_id)
            else:
                self.converge(
                    claim.instance_id,
                    rebuild=action == Action.REBUILD,
                    repair=action == Action.REPAIR,
                    sweep=bool(claim.taken_over_from),
                )
        except Interrupted:
            log.warning("operation on %s interrupted; it runs again later", name)
        except Exception as exc:  # every failure is retried or ends cleanly; none kills the worker
            log.warning("operation on %s failed: %s", name, short_reason(exc))
            if not self.rolled_back(claim.instance_id, exc):
                self.failed(claim.instance_id, exc, claim.generation)

    def converge(
        self, instance_id: str, *, rebuild: bool = False, repair: bool = False, sweep: bool = False
    ) -> None:
        self.undo_unfinished_adoption(instance_id)  # first: it lets the server image be chosen again
        self.choose_server_image(instance_id)
        member = None if rebuild or repair or sweep else self.adopt_from_pool(instance_id)
        try:
            self._converge(instance_id, member, rebuild=rebuild, repair=repair, sweep=sweep)
        except Exception:
            if member is not None:  # not adopted yet: the member is destroyed, never handed out
                try:
                    self.undo_unfinished_adoption(instance_id)
                except Exception as exc:
                    log.warning(
                        "undoing the adoption failed (the next converge does it): %s", short_reason(exc)
                    )
            raise

    def _converge(
        self, instance_id: str, member: PoolServer | None, *, rebuild: bool, repair: bool, sweep: bool
    ) -> None:
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            generation = instance.generation
            first_time = instance.ready_at is None
            sweep = sweep or instance.attempts > 0  # an earlier attempt may have left half a create
            lifecycle.working(instance)
            # The first converge fixes the instance's OpenClaw; only a rollout or a pin moves it.
            if instance.desired_image is None:
                instance.desired_image = self.settings.openclaw_image or DEFAULT_OPENCLAW_IMAGE
            rollout = rollout_outcome.updating(session, instance)
            gate = float(rollout.gate_seconds) if rollout else None
            keep_server = rollout is not None and not rollout.allow_replace
            credentials.issue_llm_key(instance, self.roots)
            config = self.stack_config(instance, replacing_server=rebuild)
            name = instance.stack_name
            pausing = instance.desired_state == DesiredState.PAUSED.value
            server_type = tiers.server_type_for(instance.tier, instance.region).name
            digest = infrastructure_digest(config, self.settings.project_dir)
            # The same infrastructure as last converged: only the app layer can change, in place.
            app_layer_only = (
                not (rebuild or repair or pausing or sweep)
                and instance.infrastructure_digest == digest
                and bool(instance.server_id and instance.volume_id)
            )
            if not app_layer_only:
                instance.infrastructure_digest = None  # known again only once this `up` succeeds
        verb = next(
            word
            for word, applies in (
                ("Pausing", pausing),
                ("Rebuilding", rebuild),
                ("Repairing", repair),
                ("Creating", first_time),
                ("Updating", True),
            )
            if applies
        )
        self.event(instance_id, "requested", f"{verb} your instance", status=InstanceStatus.CREATING)
        if sweep:
            self.stacks.refresh(name, clear_pending_creates=True)
        if sweep or repair:
            self.sweep_orphans(instance_id, name, keep_data=not first_time)
        if first_time:
            self.check_name_free(name)
        elif not app_layer_only:
            replacing = self.keep_the_data_safe(
                instance_id,
                name,
                config,
                rebuild=rebuild,
                removing=pausing,
                server_type=server_type,
                keep_server=keep_server,
            )
            if replacing and not rebuild:  # a new server from the pool's is made in full
                with self.database.sessions() as session:
                    config = self.stack_config(session.get(Instance, instance_id), replacing_server=True)
                digest = infrastructure_digest(config, self.settings.project_dir)
        outputs = self.stacks.up(
            name,
            config,
            refresh=repair,
            replace_types=(SERVER_TYPE,) if rebuild else (),
            on_event=self._engine_events(instance_id),
        )
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            instance.server_id, instance.ipv4, instance.ipv6 = outputs.server_id, outputs.ipv4, outputs.ipv6
            instance.dns_record_id = outputs.dns_record_ids[0] if outputs.dns_record_ids else None
            instance.url = outputs.url
            instance.volume_id, instance.config_hash = outputs.volume_id, outputs.config_hash
            instance.openclaw_image, instance.infrastructure_digest = outputs.openclaw_image, digest
            if not pausing:
                credentials.deployed_llm_key(instance, config["clawdet:llmApiKey"][0])
            if pausing:
                if not self._own(instance):
                    raise Interrupted()
                lifecycle.paused(instance, generation)
        if member is not None:  # after the server's id is kept: `adopted` compares it
            pool.adopted(self, member.id)
        if pausing:
            message = "Your instance is paused: no server runs, your data is kept on its volume"
            self.event(instance_id, "paused", message, status=InstanceStatus.PAUSED)
            return
        self.event(
            instance_id, "booting", "Waiting for your gateway to answer", status=InstanceStatus.BOOTING
        )
        self.await_health(instance_id, outputs.fqdn, outputs.ipv4, deadline=gate)
        self.mark_ready(instance_id, generation, "Your instance is ready")
        if member is not None:
            self.settle_adoption(instance_id)

    def adopt_from_pool(self, instance_id: str) -> PoolServer | None:
        """A new instance takes a booted warm-pool server of its tier, region and image, if any.
        Only on its first attempt: a retry is made afresh (a failure that recurs must not burn
        the pool one member per attempt)."""
        with self.database.sessions() as session:
            row = session.get(Instance, instance_id)
            new = row.server_id is None and row.ready_at is None and row.adopted_from is None
            if not new or row.attempts > 0 or row.desired_state == DesiredState.PAUSED.value:
                return None
            image = row.desired_image or self.settings.openclaw_image or DEFAULT_OPENCLAW_IMAGE
            name = row.stack_name
        member = pool.claim(self.database, instance_id, image)
        if member is not None:
            log.info(
                "%s adopts the warm-pool server %s (%s)", name, member.server_id, pool.stack_name(member.id)
            )
        return member

    def undo_unfinished_adoption(self, instance_id: str) -> None:
        """An adoption a worker did not see through (it died, or the destroy of a failed one
        failed) is undone first: that member is destroyed, never handed out again."""
        with self.database.sessions() as session:
            member_id = session.get(Instance, instance_id).adopted_from
            member = session.get(PoolServer, member_id) if member_id else None
            if member_id is None or (member is not None and member.status == "adopted"):
                return
        log.warning("an adoption of %s was not finished: destroying it", pool.stack_name(member_id))
        pool.adoption_failed(self, instance_id, member_id)

    def settle_adoption(self, instance_id: str) -> None:
        """The adopted firewall, volume and server take the instance's names and labels (the
        adopting `up` kept the pool's). The instance is ready already: a failure here is logged
        and the next converge does it."""
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            config, name = self.stack_config(instance), instance.stack_name
            instance.infrastructure_digest = None
        try:
            self.stacks.up(name, config)
        except Exception as exc:
            log.warning(
                "renaming %s's adopted resources failed (the next converge does it): %s",
                name,
                short_reason(exc),
            )
            return
        with self.database.session() as session:
            session.get(Instance, instance_id).infrastructure_digest = infrastructure_digest(
                config, self.settings.project_dir
            )

    def reboot(self, instance_id: str) -> None:
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            generation, server_id = instance.generation, instance.server_id
            fqdn, ipv4 = instance.url.removeprefix("https://") if instance.url else None, instance.ipv4
        if not server_id:
            return self.converge(instance_id, repair=True)
        self.event(instance_id, "booting", "Restarting your server", status=InstanceStatus.BOOTING)
        hetzner, cloudflare_api = cloud.clients(self.target)
        try:  # until the reboot is done, /healthz may still be the old gateway's answer
            hetzner.wait_action(hetzner.server_action(server_id, "reboot"), cancelled=self._cancelled)
        finally:
            hetzner.close(), cloudflare_api.close()
        self.await_health(instance_id, fqdn, ipv4)
        self.mark_ready(instance_id, generation, "Your instance was restarted and is ready")

    def destroy(self, instance_id: str) -> None:
        self.undo_unfinished_adoption(instance_id)
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            name, generation = instance.stack_name, instance.generation
        self.event(
            instance_id, "destroying", "Removing your server and DNS record", status=InstanceStatus.DESTROYING
        )
        final_backup.before_destroy(
            self.settings,
            self.database,
            instance_id,
            note=lambda line: self.event(instance_id, "backup", line),
        )
        self.stacks.destroy(name, on_event=self._engine_events(instance_id, removing=True))
        self.sweep_orphans(instance_id, name)
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            if not self._own(instance):
                raise Interrupted()
            lifecycle.destroyed(instance, generation)
        self.event(
            instance_id,
            "destroyed",
            "Your instance was removed",
            status=InstanceStatus.DESTROYED,
            progress=100,
        )

    # -- pieces -------------------------------------------------------------------------------

    def stack_config(
        self, instance: Instance, *, image: str | None = None, replacing_server: bool = False
    ) -> dict[str, tuple[str, bool]]:
        """The instance's stack config as the database wants it (`image`: another OpenClaw image,
        for a rollout's plan; `replacing_server`: a rebuild's new server is made in full)."""
        if not self.target.control_plane_ssh_cidrs:
            raise Refused(
                "the platform cannot reach servers to configure them: CONTROL_PLANE_SSH_CIDRS (the "
                "networks the workers connect from) is not set, and SSH is never opened to the world"
            )
        if instance.desired_state == DesiredState.PAUSED.value and not self.target.paused_page_ipv4:
            raise Refused("PAUSED_PAGE_IPV4 (the address of the platform's paused page) is not set")
        openclaw_image = image or instance.desired_image or self.settings.openclaw_image or None
        adopted_from = instance.adopted_from
        member = object_session(instance).get(PoolServer, adopted_from) if adopted_from else None
        return to_stack_config(
            **self._platform_config(),
            subdomain=instance.subdomain,
            tier=instance.tier,
            region=instance.region,
            instance_id=instance.id,
            user_id=naming.owner_label(instance.user_id),
            model=self.settings.instance_model,
            openclaw_image=openclaw_image,
            llm_base_url=self.settings.llm_proxy_url,
            llm_api_key=credentials.llm_key(self.roots, instance),
            gateway_token=credentials.gateway_token(self.roots, instance),
            paused=instance.desired_state == DesiredState.PAUSED.value,
            paused_page_ipv4=self.target.paused_page_ipv4 or None,
            restarts=str(instance.restarts),
            server_image=instance.server_image or None,
            golden_image=True if (instance.server_image or "").isdigit() else None,
            adopt_from_pool=pool.import_ids(member) if member and member.status == "adopting" else None,
            adopted=pool.still_adopted(member, instance.server_id, replacing_server) if member else None,
        )

    def _platform_config(self) -> dict[str, str | None]:
        """What every stack of this platform shares: an instance's and a warm-pool member's (so
        a member's firewall and server are what the instance adopting it would have made)."""
        return {
            "installation_id": self.database.installation_id,
            "base_domain": self.target.base_domain,
            "cloudflare_zone_id": self.target.zone_id,
            "caddy_image": self.settings.caddy_image or None,
            "browser_image": self.settings.browser_image or None,
            "ssh_keys": self.settings.hcloud_ssh_keys or None,
            "operator_ssh_cidrs": self.settings.operator_ssh_cidrs or None,
            "control_plane_ssh_cidrs": self.target.control_plane_ssh_cidrs,
            "ssh_port": str(self.target.ssh_port),
            "ssh_private_key": self.settings.instance_ssh_private_key,
        }

    def pool_member_config(self, member: PoolServer) -> dict[str, tuple[str, bool]]:
        return self._pool_config(
            member.tier, member.region, member.server_image, member.openclaw_image, member.id
        )

    def pool_config_digest(self, tier: str, region: str, server_image: str, openclaw_image: str) -> str:
        """What a member made now would be, but its own id: another digest makes a member outdated."""
        config = self._pool_config(tier, region, server_image, openclaw_image, "member")
        return infrastructure_digest(config, self.settings.project_dir)

    def _pool_config(
        self, tier, region, server_image, openclaw_image, member_id
    ) -> dict[str, tuple[str, bool]]:
        if not self.target.control_plane_ssh_cidrs:
            raise Refused("CONTROL_PLANE_SSH_CIDRS is not set: the warm pool makes no server")
        return to_stack_config(
            **self._platform_config(),
            subdomain=f"pool-{member_id}",
            tier=tier,
            region=region,
            user_id="pool",
            pool_member=member_id,
            openclaw_image=openclaw_image,
            server_image=server_image,
            golden_image=True if server_image.isdigit() else None,
        )

    def newest_images(self, region: str, openclaw_image: str | None = None) -> tuple[str, str]:
        """(the Hetzner image, the OpenClaw image) a new server in `region` starts from: the newest
        golden snapshot of that OpenClaw version (and the settings' other images) there, else the
        stock image. Raises what the lookup raises."""
        openclaw_image = openclaw_image or self.settings.openclaw_image or DEFAULT_OPENCLAW_IMAGE
        snapshot = golden.newest(
            self.target,
            self.database.installation_id,
            openclaw_image,
            region,
            caddy_image=self.settings.caddy_image or None,
            browser_image=self.settings.browser_image or None,
        )
        return (str(snapshot) if snapshot is not None else DEFAULT_SERVER_IMAGE), openclaw_image

    def choose_server_image(self, instance_id: str) -> None:
        """A new instance's server boots from the newest golden snapshot of its OpenClaw version
        and region, else the stock image; the choice is kept in the database (another image
        would replace the server). Only a retry whose snapshot is gone (a golden rebuild deleted
        it) and whose stack holds no server yet chooses again. Looked up outside any transaction."""
        with self.database.sessions() as session:
            row = session.get(Instance, instance_id)
            if row.server_id is not None or row.ready_at is not None:
                return
            image, region, name, kept = row.desired_image, row.region, row.stack_name, row.server_image
            if kept is not None and not (row.attempts > 0 and kept.isdigit()):
                return
        # A failed attempt that made the server already keeps its image: another would replace it.
        made = lambda: any(r.get("type") == SERVER_TYPE for r in self.stacks.resources(name))
        if kept is not None and (not self._snapshot_gone(kept) or made()):
            return
        try:
            chosen, _ = self.newest_images(region, image)
        except (cloud.ApiError, ValueError) as exc:
            log.warning("no golden snapshot lookup for %s, so the stock image: %s", name, exc)
            chosen = DEFAULT_SERVER_IMAGE
        with self.database.session() as session:
            row = session.get(Instance, instance_id)
            if row.server_image == kept:
                row.server_image = chosen
                log.info("%s boots from %s", name, ("golden snapshot " if chosen.isdigit() else "") + chosen)

    def _snapshot_gone(self, snapshot_id: str) -> bool:
        hetzner = cloud.Hetzner(self.target.hcloud_endpoint, self.target.hcloud_token)
        try:
            return hetzner.image(snapshot_id) is None
        except cloud.ApiError as exc:
            log.warning("could not look up snapshot %s, so it is kept: %s", snapshot_id, exc)
            return False
        finally:
            hetzner.close()

    def refuse_host_secrets(self) -> None:
        """Outside the sandbox every worker host must share the platform's secrets: one made up
        on this host would lock the others out (an SSH key), make stack files only this host can
        read (the passphrase) or credentials only it derives (the credential roots)."""
        made_up = sorted(self.settings.generated)
        if made_up:
            raise UserFacingError(
                "secrets_not_set",
                f"{', '.join(made_up)} {'is' if len(made_up) == 1 else 'are'} not set: this host would "
                "make up its own, which no other worker host shares.",
                "Set them (the same on every host; keep them with your backups), then start again.",
                status=503,
            )

    def refuse_images_without_digest(self) -> None:
        """Real servers pull every image by digest (a tag can be moved to other bytes): the
        images the settings choose are checked once, when a worker starts; a rollout's or a
        pin's when it is given. An instance already running a tag keeps it until moved."""
        images = {
            "OPENCLAW_IMAGE": self.settings.openclaw_image or DEFAULT_OPENCLAW_IMAGE,
            "CADDY_IMAGE": self.settings.caddy_image or KEYS_BY_FIELD["caddy_image"].default,
            "BROWSER_IMAGE": self.settings.browser_image or KEYS_BY_FIELD["browser_image"].default,
        }
        for setting, value in images.items():
            try:
                digest_pinned_image(value, setting)
            except ValueError as error:
                raise UserFacingError(
                    "image_not_pinned", str(error), "Set it, then start the workers again.", status=503
                ) from None

    def await_health(
        self, instance_id: str, fqdn: str | None, ipv4: str | None, *, deadline: float | None = None
    ) -> None:
        """The health gate: /healthz answers from outside, then a chat through the gateway
        succeeds. `deadline`: a rollout's gate (an update of a running gateway), else the
        first boot's."""
        url = self.target.health_url(fqdn=fqdn or "", ipv4=ipv4)
        if url is None:
            raise RuntimeError("the stack has no address to probe")
        deadline = deadline or self.config.ready_deadline
        result = wait_healthy(url, deadline, cancelled=self._cancelled)
        if not result.ok and self._cancelled():
            raise Interrupted()
        if not result.ok:
            raise RuntimeError(f"the gateway did not answer /healthz within {deadline:.0f}s")
        self.event(instance_id, "checking", "Sending your assistant a first message")
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            token = credentials.gateway_token(self.roots, instance)
        try:
            chat_check(self.target.gateway_url(fqdn=fqdn or "", ipv4=ipv4), token, cancelled=self._cancelled)
        except GatewayNotAnswering:
            if self._cancelled():
                raise Interrupted() from None
            raise

    def mark_ready(self, instance_id: str, generation: int, message: str) -> None:
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            if not self._own(instance):
                raise Interrupted()
            first, was_down = lifecycle.ready(instance, generation)
            if instance.rollout_id and instance.observed_generation == instance.generation:
                rollout_outcome.passed(session, instance)
            if first:
                self.notifier.instance_ready(session, instance)
            elif was_down:
                self.notifier.health_changed(session, instance, True)
        self.event(instance_id, "ready", message, status=InstanceStatus.READY)

    def rolled_back(self, instance_id: str, error: Exception) -> bool:
        """A rollout's update that failed (the engine or the gate) goes back to the image the
        instance ran, in place, at once; the rollout counts it. False: not a rollout's update."""
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            if not self._own(instance):
                return True
            if instance.rollout_id is None or instance.desired_state != DesiredState.RUNNING.value:
                return False
            previous = rollout_outcome.rolled_back(session, instance, short_reason(error))
        if previous is None:
            return False
        log.warning("rollout update of %s failed; rolling back to %s", instance_id, previous)
        return True

    def failed(self, instance_id: str, error: Exception, generation: int) -> None:
        """Count the failed attempt and settle it as lifecycle.settle_failure decides. `generation`
        is the one worked; a newer one (a destroy asked for meanwhile) stays queued."""
        reason = short_reason(error)
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            if not self._own(instance):
                return
            settled = lifecycle.attempt_failed(
                instance, self.config.retry, give_up=isinstance(error, Refused)
            )
            attempts, name = instance.attempts, instance.stack_name
            first_create = instance.ready_at is None
        if settled.alarm:
            log.error("destroy of %s keeps failing (%s attempts): %s", name, attempts, reason)
        if not settled.final:
            self.event(
                instance_id,
                "retry",
                f"Attempt {attempts} failed ({reason}); trying again in "
                f"{settled.retry_in.total_seconds():.0f}s",
                kind=EventKind.ERROR,
                status=settled.status,
            )
            return
        cleanup_error = None
        if settled.cleanup:
            self.event(
                instance_id,
                "failed",
                f"Giving up after {attempts} attempts ({reason}); cleaning up",
                kind=EventKind.ERROR,
            )
            try:
                self.stacks.refresh(name, clear_pending_creates=True)
                self.stacks.destroy(name)
                self.sweep_orphans(instance_id, name)
            except Exception as exc:
                cleanup_error = short_reason(exc)
                log.error("cleanup of %s failed: %s", name, cleanup_error)
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            lifecycle.gave_up(instance, generation, resources_removed=settled.cleanup and not cleanup_error)
            self.notifier.instance_failed(session, instance, reason)
        if not first_create:
            message = (
                f"We could not repair your instance: {reason}. Its server is kept as it is. "
                "Try Rebuild from your dashboard, or contact support."
            )
        elif cleanup_error:
            message = (
                f"We could not set up your instance: {reason}. We are cleaning up; our team has been told."
            )
        else:
            message = (
                f"We could not set up your instance: {reason}. Nothing is left running. "
                "Try again from your dashboard; if it fails again, contact support."
            )
        self.event(instance_id, "failed", message, status=settled.status, kind=EventKind.ERROR)

    def keep_the_data_safe(
        self,
        instance_id: str,
        name: str,
        config: dict[str, tuple[str, bool]],
        *,
        rebuild: bool,
        removing: bool = False,
        server_type: str | None = None,
        keep_server: bool = False,
    ) -> bool:
        """Before an update that replaces (or, pausing, removes) the server: refuse it for an
        instance whose data is on the server's own disk (made before data volumes), and otherwise
        shut the server down cleanly, so the volume is unmounted before the engine detaches it.
        A new server type is changed in place, but Hetzner's change_type needs the server off
        (the provider powers it off hard): it is shut down cleanly first too. `keep_server`: a
        rollout that was not planned to replace servers refuses it here (it rolls back). Whether
        the server is replaced (or removed)."""
        types = {r.get("type") for r in self.stacks.resources(name)}
        if SERVER_TYPE not in types:
            return False
        if not (rebuild or removing or replaces(self.stacks.planned(name, config).get(SERVER_TYPE, set()))):
            if server_type is not None and self._server_type_changes(instance_id, server_type):
                self._shut_down(instance_id, "Stopping your server cleanly to resize it")
            return False
        if keep_server:
            raise Refused(
                "this update would replace the server, which its rollout was not planned to do "
                "(something changed since the plan); plan again"
            )
        if VOLUME_TYPE not in types:
            raise Refused(
                "this instance keeps its data on its server's own disk (it was made before data "
                "volumes), and this change would replace the server; an operator moves the data first"
            )
        self._shut_down(instance_id, "Stopping your server cleanly before it is replaced")
        return True

    def _server_type_changes(self, instance_id: str, server_type: str) -> bool:
        with self.database.sessions() as session:
            server_id = session.get(Instance, instance_id).server_id
        if not server_id:
            return False
        hetzner, cloudflare_api = cloud.clients(self.target)
        try:
            server = hetzner.server(server_id)
        finally:
            hetzner.close(), cloudflare_api.close()
        return server is not None and server["server_type"]["name"] != server_type

    def _shut_down(self, instance_id: str, message: str) -> None:
        with self.database.sessions() as session:
            server_id = session.get(Instance, instance_id).server_id
        if server_id:
            self.event(instance_id, "server", message)
            hetzner, cloudflare_api = cloud.clients(self.target)
            try:
                hetzner.power_down(server_id, cancelled=self._cancelled)
            finally:
                hetzner.close(), cloudflare_api.close()

    def check_name_free(self, name: str) -> None:
        """A new instance never takes a name that already has DNS records the platform did not
        make (an operator's mail, a status page): refused at once, nothing is created."""
        fqdn = f"{name}.{self.target.base_domain}"
        _hetzner, cloudflare_api = cloud.clients(self.target)
        try:
            records = cloudflare_api.records(self.target.zone_id, name=fqdn)
        finally:
            _hetzner.close(), cloudflare_api.close()
        ours = naming.dns_record_comment(self.database.installation_id, name)
        others = [r for r in records if r.get("comment") != ours]
        if not others:
            return  # the usual case: no need to read the stack's state (a CLI run)
        held = {str(r.get("id")) for r in self.stacks.resources(name) if r.get("type") == DNS_TYPE}
        foreign = [r for r in others if str(r["id"]) not in held]
        if foreign:
            raise Refused(
                f"the name {fqdn} already has DNS records Clawdet did not make; choose another name"
            )

    def sweep_orphans(self, instance_id: str, name: str, *, keep_data: bool = False) -> list[str]:
        """Delete cloud resources labelled for this instance that its stack does not hold: what
        an interrupted `up` created after its last checkpoint, so a retry never duplicates.
        `keep_data`: an instance that once was ready never loses a volume this way (its stack
        may have lost track of it; an operator decides), it is only reported."""
        known = {(r.get("type"), str(r.get("id"))) for r in self.stacks.resources(name) if r.get("id")}
        fqdn = f"{name}.{self.target.base_domain}"
        hetzner, cloudflare_api = cloud.clients(self.target)
        removed: list[str] = []
        try:
            selector = naming.ours(self.database.installation_id, instance_id)
            for server in hetzner.servers(selector):
                if (SERVER_TYPE, str(server["id"])) not in known:
                    hetzner.delete_server(server["id"])
                    removed.append(f"server {server['id']}")
            for firewall in hetzner.firewalls(selector):
                if (FIREWALL_TYPE, str(firewall["id"])) not in known:
                    hetzner.delete_firewall(firewall["id"])
                    removed.append(f"firewall {firewall['id']}")
            for volume in hetzner.volumes(selector):
                if (VOLUME_TYPE, str(volume["id"])) in known:
                    continue
                if keep_data:
                    log.error("volume %s of %s is not in its stack; kept for an operator", volume["id"], name)
                    continue
                hetzner.delete_volume(volume["id"])
                removed.append(f"volume {volume['id']}")
            for record in cloudflare_api.records(self.target.zone_id, name=fqdn):
                if (DNS_TYPE, str(record["id"])) in known:
                    continue
                if record.get("comment") != naming.dns_record_comment(self.database.installation_id, name):
                    continue  # not made by this installation's stacks: never ours to delete
                cloudflare_api.delete_record(self.target.zone_id, record["id"])
                removed.append(f"record {record['id']}")
        finally:
            hetzner.close(), cloudflare_api.close()
        if removed:
            log.warning("removed orphans of %s: %s", name, ", ".join(removed))
        return removed

    def event(
        self,
        instance_id: str,
        step: str,
        message: str,
        *,
        kind: EventKind = EventKind.PROGRESS,
        status: InstanceStatus | None = None,
        progress: int | None = None,
    ) -> None:
        with self.database.session() as session:
            instance = session.get(Instance, instance_id)
            lifecycle.record(session, instance, step, message, kind=kind, status=status, progress=progress)

    def _engine_events(self, instance_id: str, removing: bool = False):
        seen: set[str] = set()

        def on_event(event: auto.EngineEvent) -> None:
            pre = event.resource_pre_event
            if pre is None or pre.metadata.op in (auto.OpType.SAME, auto.OpType.READ):
                return
            step = STEP_OF_TYPE.get(pre.metadata.type)
            if step is None or step in seen:
                return
            seen.add(step)
            verb = (
                "Removing"
                if removing or pre.metadata.op == auto.OpType.DELETE
                else ("Creating" if pre.metadata.op == auto.OpType.CREATE else "Updating")
            )
            try:  # a removal is no step of the progress bar towards ready
                self.event(instance_id, f"remove-{step}" if removing else step, f"{verb} {STEP_WORDS[step]}")
            except Exception:  # progress is best effort; never break the engine's event stream
                log.exception("could not record engine event")

        return on_event


def replaces(operations: set[str]) -> bool:
    return bool(operations & {"replace", "create-replacement", "delete-replaced"})


class Refused(Exception):
    """A change the platform will not make (a name that is someone else's, data that would be
    lost): a final failure, not worth retrying."""


class Interrupted(Exception):
    """The worker is stopping or lost its lease: not a failure, no attempt is counted."""


GENERIC = re.compile(r"^(error:\s*)?(update|destroy|refresh|preview) failed$", re.I)


REMOTE_FAILURE = re.compile(r"Process exited with status (\d+): running \"")


def remote_failure(text: str) -> str | None:
    """A remote command that failed, in words: the last line it printed, which is the failed
    step's own message (each step of a deploy stops the chain with its error). The engine's
    diagnostics list the output indented under the error line, up to a blank line."""
    matches = list(REMOTE_FAILURE.finditer(text))
    if not matches:
        return None
    output = []
    for line in text[matches[-1].end() :].splitlines()[1:]:
        if not line.strip():
            break
        output.append(line.strip())
    last = output[-1] if output else f"exit status {matches[-1].group(1)}"
    return f"the server did not take its new configuration: {last[:180]}"


URL_CREDENTIALS = re.compile(r"(://[^/:@\s]+):[^@\s]*@")  # a password in a URL the engine quotes


def short_reason(error: BaseException) -> str:
    """One line a person can read, without engine noise (and never a secret: the engine masks
    secret values, and we keep only the error line)."""
    text = str(error)
    remote = remote_failure(text)
    if remote:
        return remote[:240]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\berror\b", line, re.I) and not GENERIC.match(line)]
    line = errors[-1] if errors else lines[-1] if lines else type(error).__name__
    line = re.sub(r"^((stderr|stdout):\s*)?(error:\s*)+", "", line, flags=re.I)
    return URL_CREDENTIALS.sub(r"\1***@", line)[:240]
