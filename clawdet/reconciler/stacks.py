"""The Automation API on the local program (Pulumi.yaml + programs/), never an inline program:
the operator's `pulumi` CLI and the workers run the same code on the same stacks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto
from pulumi.automation._stack import StackInitMode
from sqlalchemy.engine import make_url

import toolchain
from clawdet.cloud import PROVIDER_CONFIG_KEYS, CloudTarget
from clawdet.errors import UserFacingError
from clawdet.reconciler import passphrase
from clawdet.reconciler.engine_command import EngineCommand
from clawdet.settings import Settings, holds_state
from programs.instance_config import FULL_NAMES

log = logging.getLogger(__name__)

EventHandler = Callable[[auto.EngineEvent], None]
PROJECT = "clawdet-instance"
# The stack config the platform writes in full: a key it leaves out is removed.
MANAGED_KEYS = frozenset(FULL_NAMES) | frozenset(PROVIDER_CONFIG_KEYS)


class _QuotedStrings(yaml.SafeDumper):
    """Every string double-quoted. Pulumi reads stack files as YAML 1.2 (Go's yaml.v3), which
    takes a bare `1e3`, `08` or `0o17` for a number (the program would get "1000", "8", "15"),
    and PyYAML, a YAML 1.1 writer, leaves exactly those bare."""


_QuotedStrings.add_representer(
    str, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')
)


def stack_file_text(document: dict) -> str:
    return yaml.dump(document, Dumper=_QuotedStrings, sort_keys=True, width=float("inf"), allow_unicode=True)


@dataclass
class StackOutputs:
    server_id: str | None
    ipv4: str | None
    ipv6: str | None
    dns_record_ids: list[str]
    url: str | None
    fqdn: str | None
    volume_id: str | None = None
    config_hash: str | None = None
    openclaw_image: str | None = None

    @classmethod
    def from_outputs(cls, outputs: dict[str, auto.OutputValue]) -> StackOutputs:
        from programs.instance_config import OutputName as O

        value = lambda key: outputs[key].value if key in outputs else None
        server_id = value(O.SERVER_ID)
        return cls(
            server_id=str(server_id) if server_id is not None else None,
            ipv4=value(O.IPV4),
            ipv6=value(O.IPV6),
            dns_record_ids=list(value(O.DNS_RECORD_IDS) or []),
            url=value(O.URL),
            fqdn=value(O.FQDN),
            volume_id=str(value(O.VOLUME_ID)) if value(O.VOLUME_ID) is not None else None,
            config_hash=value(O.CONFIG_HASH),
            openclaw_image=value(O.OPENCLAW_IMAGE),
        )


class Stacks:
    """One object per process: knows the toolchain, the backend, the secrets provider and the
    cloud the providers talk to."""

    def __init__(self, settings: Settings, target: CloudTarget):
        tools = toolchain.find()
        if tools is None:
            raise RuntimeError("The Pulumi toolchain is missing: run `make toolchain`.")
        self.settings = settings
        self.target = target
        self.project_dir = settings.project_dir
        backend, backend_password = without_password(settings.pulumi_backend_url)
        self.env = {
            **tools.env({"PATH": os.environ.get("PATH", "")}),
            "PULUMI_BACKEND_URL": backend,  # never the password: the engine quotes it in errors
            **({"PGPASSWORD": backend_password} if backend_password else {}),
            "PULUMI_CONFIG_PASSPHRASE": settings.pulumi_passphrase,
            **target.provider_env(),
        }
        self.command = EngineCommand(root=str(tools.root))
        self._secrets_written: dict[tuple[str, str], tuple[str, str]] = {}
        self._crypters: dict[object, passphrase.Crypter] = {}
        self._check_backend()

    def _check_backend(self) -> None:
        url = self.settings.pulumi_backend_url
        if url.startswith("file://"):
            Path(url.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
            return
        # Before PostgreSQL was the default, state lived in the data dir: never start afresh
        # beside it (every instance would look new, and be made again).
        earlier = self.settings.data_dir / "pulumi-state"
        if holds_state(earlier):
            raise UserFacingError(
                "state_elsewhere",
                f"Pulumi state of earlier operations is in {earlier}, but PULUMI_BACKEND_URL points "
                "elsewhere.",
                f"Keep it there: unset PULUMI_BACKEND_URL (or set it to file://{earlier}); or move "
                "it (README: where the state lives), then remove that folder.",
                status=503,
            )

    def _workspace(self, creating: bool = False) -> Workspace:
        workspace = Workspace(
            work_dir=str(self.project_dir),
            pulumi_home=self.env.get("PULUMI_HOME"),
            env_vars=self.env,
            secrets_provider="passphrase",
            pulumi_command=self.command,
        )
        workspace.creating = creating
        return workspace

    def stack(self, name: str) -> auto.Stack:
        return Stack(name, self._workspace(creating=True), StackInitMode.SELECT)

    def existing(self, name: str) -> auto.Stack | None:
        try:
            return auto.Stack.select(name, self._workspace())
        except auto.StackNotFoundError:
            return None

    def configure(self, stack: auto.Stack, config: dict[str, tuple[str, bool]]) -> None:
        """Write exactly `config`: a declared key it leaves out is removed, so the program's
        default applies instead of a stale value. The stack file is written here, a secret
        encrypted again only when the file holds another value; no `pulumi config` run (0.4 s
        each). A stack file whose secrets this process cannot read (no salt yet on this host)
        goes through the CLI: plain values in one `config set-all`, each secret through stdin."""
        config = {**config, **self.target.provider_config()}
        path = self.stack_file(stack.name)
        document = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
        crypter = self._crypter(document.get("encryptionsalt"))
        if crypter is None:
            return self._configure_with_cli(stack, config)
        values = document.get("config") or {}
        values = {key: value for key, value in values.items() if key not in MANAGED_KEYS or key in config}
        for key, (text, secret) in config.items():
            held = values.get(key)
            if not secret:
                values[key] = text
            elif not (isinstance(held, dict) and crypter.decrypt(str(held.get("secure"))) == text):
                values[key] = {"secure": crypter.encrypt(text)}
        document["config"] = values
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        partial.write_text(stack_file_text(document))
        os.replace(partial, path)

    def _crypter(self, encryption_salt: object) -> passphrase.Crypter | None:
        """The stack's crypter; its key takes 0.4 s to derive, so once per stack and process."""
        if encryption_salt not in self._crypters:
            crypter = passphrase.for_stack(self.settings.pulumi_passphrase, encryption_salt)
            if crypter is None:
                return None
            self._crypters[encryption_salt] = crypter
        return self._crypters[encryption_salt]

    def _configure_with_cli(self, stack: auto.Stack, config: dict[str, tuple[str, bool]]) -> None:
        stack.set_all_config(
            {key: auto.ConfigValue(value=text) for key, (text, secret) in config.items() if not secret}
        )
        for key, (text, secret) in config.items():
            if secret:
                self._set_secret(stack.name, key, text)
        stale = [key for key in self.written_config(stack.name) if key in MANAGED_KEYS and key not in config]
        if stale:
            stack.remove_all_config(stale)

    def _set_secret(self, name: str, key: str, text: str) -> None:
        fingerprint = hashlib.sha256(text.encode()).hexdigest()
        if self._secrets_written.get((name, key)) == (fingerprint, self._ciphertext(name, key)):
            return  # the file still holds what this process encrypted for this very value
        self.command.run(
            ["config", "set", "--secret", "--raw", "--stack", name, key],
            str(self.project_dir),
            self.env,
            stdin=text,
        )
        self._secrets_written[(name, key)] = (fingerprint, self._ciphertext(name, key))

    def _ciphertext(self, name: str, key: str) -> str | None:
        value = self.written_config(name).get(key)
        return value.get("secure") if isinstance(value, dict) else None

    def stack_file(self, name: str) -> Path:
        return self.project_dir / "stacks" / f"Pulumi.{name}.yaml"

    def written_config(self, name: str) -> dict[str, Any]:
        """The stack file's config, read directly (a CLI call costs half a second)."""
        try:
            return (yaml.safe_load(self.stack_file(name).read_text()) or {}).get("config") or {}
        except FileNotFoundError:
            return {}

    def up(
        self,
        name: str,
        config: dict[str, tuple[str, bool]],
        *,
        refresh: bool = False,
        replace_types: tuple[str, ...] = (),
        on_event: EventHandler | None = None,
    ) -> StackOutputs:
        stack = self.stack(name)
        self.configure(stack, config)
        replace = (
            [r["urn"] for r in self.resources(name) if r.get("type") in replace_types]
            if replace_types
            else []
        )
        result = stack.up(
            refresh=refresh,
            replace=replace or None,
            on_event=stack.watching(on_event),
            color="never",
            message=f"clawdet reconcile {name}",
            show_secrets=False,  # the summary's, if it is read: no key derivation for it
        )
        return StackOutputs.from_outputs(result.outputs)

    def resources(self, name: str) -> list[dict[str, Any]]:
        """The resources in the stack's state (with their cloud ids), even after an interrupted
        update: the engine checkpoints every step."""
        return list(self.export(name).get("resources") or [])

    def planned(self, name: str, config: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
        """What `up` with `config` would do, by resource type: {"hcloud:...:Server": {"replace"}}
        (the engine's own preview; types without a change are left out)."""
        stack = self.existing(name)
        if stack is None:
            return {}
        self.configure(stack, config)
        return _changes(stack)

    def preview_with(self, name: str, config: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
        """Like `planned`, refreshed first, but without writing the stack's config (a worker may
        run `up` on it meanwhile): the engine reads a copy of the stack file with `config`'s
        plain values. Secret values stay as the file has them encrypted: the stacks a plan
        previews are converged, so they are the database's."""
        stack = self.existing(name)
        if stack is None:
            raise RuntimeError(f"the stack {name} does not exist yet")
        config = {**config, **self.target.provider_config()}
        document = yaml.safe_load(self.stack_file(name).read_text()) or {}
        values = dict(document.get("config") or {})
        for key in [k for k, v in values.items() if k in MANAGED_KEYS and k not in config]:
            if not (isinstance(values[key], dict) and "secure" in values[key]):
                del values[key]
        for key, (text, secret) in config.items():
            if not secret:
                values[key] = text
            elif key not in values:
                raise RuntimeError(f"the stack {name} has no {key} yet; let a worker converge it first")
        document["config"] = values
        with tempfile.TemporaryDirectory(prefix="clawdet-plan-") as private:  # 0700
            copy = Path(private) / f"Pulumi.{name}.yaml"
            copy.write_text(stack_file_text(document))
            return _changes(stack, refresh=True, config_file=str(copy))

    def preview_changes(self, name: str, *, refresh: bool = True) -> dict[str, int]:
        """Planned operations by kind ({"same": 4} means no drift), refreshing first."""
        stack = self.existing(name)
        if stack is None:
            return {"create": 1}
        result = stack.preview(refresh=refresh, color="never")
        return dict(result.change_summary)

    def refresh(self, name: str, *, clear_pending_creates: bool = False) -> None:
        """`clear_pending_creates` drops creates an interrupted update left pending (the sweep
        of orphans then deletes what they made in the cloud)."""
        stack = self.existing(name)
        if stack is not None:
            stack.refresh(color="never", clear_pending_creates=clear_pending_creates or None)

    def outputs(self, name: str) -> StackOutputs | None:
        stack = self.existing(name)
        return StackOutputs.from_outputs(stack.outputs()) if stack else None

    def destroy(self, name: str, *, on_event: EventHandler | None = None) -> None:
        stack = self.existing(name)
        if stack is None:
            return
        stack.destroy(on_event=on_event, color="never", message=f"clawdet destroy {name}")
        stack.workspace.remove_stack(name)

    def forget(self, name: str) -> None:
        """Remove the stack and its state but leave its resources in the cloud (another stack
        has imported them): `pulumi stack rm --force`."""
        stack = self.existing(name)
        if stack is not None:
            stack.workspace.remove_stack(name, force=True)

    def clear_stale_lock(self, name: str) -> None:
        """A worker that died mid-operation leaves the stack locked. The caller holds a lease
        taken over a full lease after the dead one ended, so the lock's holder has stopped (see
        leases): the engine's own `pulumi cancel` clears it, on every backend."""
        stack = self.existing(name)
        if stack is not None:
            stack.cancel()
            log.warning("cleared any Pulumi lock left on stack %s", name)
        elif self._clear_lock_of_unmade_stack(name):
            log.warning("cleared the Pulumi lock of stack %s, which its creation left", name)

    def _clear_lock_of_unmade_stack(self, name: str) -> bool:
        """Creating a stack takes its lock too, and `pulumi cancel` needs the stack: a worker
        killed while creating one leaves a lock only the backend's own storage can give back
        (there is no state to harm). The backends the platform sets up: a folder, a table."""
        url = self.settings.pulumi_backend_url
        if url.startswith("file://"):
            locks = Path(url.removeprefix("file://")) / ".pulumi" / "locks"
            found = [path for path in locks.glob(f"*/{PROJECT}/{name}/*.json") if path.is_file()]
            for path in found:
                path.unlink(missing_ok=True)
            return bool(found)
        if url.startswith(("postgres://", "postgresql://")):
            import psycopg
            from psycopg import sql

            backend = make_url(url)
            table = backend.query.get("table", "pulumi_state")
            libpq = backend.set(drivername="postgresql").difference_update_query(["table"])
            with psycopg.connect(libpq.render_as_string(hide_password=False), connect_timeout=10) as db:
                deleted = db.execute(
                    sql.SQL("DELETE FROM {} WHERE key LIKE %s").format(sql.Identifier(table)),
                    (f"%.pulumi/locks/%/{PROJECT}/{name}/%",),
                )
                return deleted.rowcount > 0
        log.error("stack %s may hold a lock its creation left; clear it in the backend by hand", name)
        return False

    def export(self, name: str) -> dict[str, Any]:
        stack = self.existing(name)
        return stack.export_stack().deployment if stack else {}

    def import_state(self, name: str, version: int, deployment: dict[str, Any]) -> None:
        self.stack(name).import_stack(auto.Deployment(version=version, deployment=deployment))


class Stack(auto.Stack):
    """The SDK's stack, whose `up` costs one CLI run instead of three: after the update the SDK
    runs `stack output` (its outputs) and `stack history` (a summary nobody here reads). The
    outputs are in the engine's own event for the stack resource; `watching` collects them."""

    _outputs: dict[str, Any] | None = None  # the stack's last outputs event, once the update's summary came

    def watching(self, on_event: EventHandler | None) -> EventHandler:
        self._outputs = None
        last: dict[str, Any] | None = None

        def collect(event: auto.EngineEvent) -> None:
            nonlocal last
            done = event.res_outputs_event
            if done is not None and done.metadata.type == "pulumi:pulumi:Stack":
                last = dict((done.metadata.new.outputs if done.metadata.new else None) or {})
            if event.summary_event is not None:  # the last event: `last` is the update's own
                self._outputs = last
            if on_event is not None:
                on_event(event)

        return collect

    def outputs(self) -> auto.OutputMap:
        seen = self._outputs
        if seen is None or "[secret]" in json.dumps(seen):  # not seen, or masked: ask the CLI
            return super().outputs()
        return {key: auto.OutputValue(value=value, secret=False) for key, value in seen.items()}

    def info(self, show_secrets: bool = False) -> auto.UpdateSummary | None:
        if self._outputs is None:
            return super().info(show_secrets)
        return auto.UpdateSummary(
            kind="update", start_time=None, message="", environment={}, config={}, result=""
        )


class Workspace(auto.LocalWorkspace):
    """The SDK's workspace with fewer CLI runs (each costs 0.4 s of CPU): `creating`, selecting
    a stack makes it when it does not exist (`stack select --create`, not a select that fails
    and then an init); the outputs in one run."""

    creating = False

    def select_stack(self, stack_name: str) -> None:
        if not self.creating:
            return super().select_stack(stack_name)
        args = ["stack", "select", "--create", "--secrets-provider", self.secrets_provider]
        self.pulumi_command.run([*args, "--stack", stack_name], self.work_dir, self.env_vars)

    def stack_outputs(self, stack_name: str) -> auto.OutputMap:
        """One run, not the SDK's two (masked, then with secrets, to tell which are secret: no
        caller asks, each is marked not secret). Masked first: the program's outputs are not
        secret, and showing secrets costs a key derivation; only a masked value asks for them."""
        args = ["stack", "output", "--json", "--stack", stack_name]
        text = self.pulumi_command.run(args, self.work_dir, self.env_vars).stdout
        if '"[secret]"' in text:
            text = self.pulumi_command.run([*args, "--show-secrets"], self.work_dir, self.env_vars).stdout
        return {key: auto.OutputValue(value=value, secret=False) for key, value in json.loads(text).items()}


def without_password(backend_url: str) -> tuple[str, str | None]:
    """A postgres:// backend URL without its password, and the password (which the engine's
    driver, lib/pq, reads from PGPASSWORD)."""
    if not backend_url.startswith(("postgres://", "postgresql://")):
        return backend_url, None
    url = make_url(backend_url)
    if url.password is None:
        return backend_url, None
    return url._replace(password=None).render_as_string(hide_password=False), str(url.password)


def _changes(stack: auto.Stack, **preview: Any) -> dict[str, set[str]]:
    """The engine's preview as planned operations by resource type (unchanged types left out)."""
    plan: dict[str, set[str]] = {}

    def collect(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.op not in (auto.OpType.SAME, auto.OpType.READ):
            plan.setdefault(pre.metadata.type, set()).add(str(pre.metadata.op.value))

    stack.preview(color="never", on_event=collect, **preview)
    return plan
