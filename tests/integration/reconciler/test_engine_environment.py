"""Hardening (issue 16, item 14): the engine, and every program and plugin it starts, gets only
what it needs from the worker's environment, and no secret is ever on a command line (real
engine, stand-in plugins, sandbox; the CLI is wrapped to record what it was given)."""

import dataclasses
import stat

import pytest

import toolchain
from clawdet.reconciler.engine_command import EngineCommand
from tests.fixtures.provisioning import instance, new_instance

pytestmark = [pytest.mark.engine, pytest.mark.postgres]

WORKER_SECRETS = {
    "SECRET_KEY": "worker-secret-key-7f3a",
    "CREDENTIALS_ROOT": "credentials-root-2e61",
    "GATEWAY_TOKEN_ROOT": "gateway-token-root-9d07",
    "DATABASE_URL": "postgresql://clawdet:db-password-91c2@db.internal/clawdet",
    "LLM_PRIMARY_KEY": "llm-primary-key-5b8e",
    "SMTP_PASSWORD": "smtp-password-d41d",
    "X_CLIENT_SECRET": "x-client-secret-0c9a",
}


def recording_cli(folder, log):
    """A `pulumi` that writes its arguments and environment to `log`, then runs the real one."""
    real = toolchain.find().root / "bin" / "pulumi"
    (folder / "bin").mkdir(parents=True)
    script = folder / "bin" / "pulumi"
    script.write_text(
        f'#!/bin/sh\n{{ printf "ARGV"; printf " %s" "$@"; printf "\\n"; env | sed "s/^/ENV /"; }} >> {log}\n'
        f'exec {real} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return EngineCommand(root=str(folder))


def test_the_engine_sees_no_worker_secret_and_secrets_never_reach_argv(
    reconciler, prov_db, prov_settings, tmp_path, monkeypatch
):
    for name, value in WORKER_SECRETS.items():
        monkeypatch.setenv(name, value)
    log = tmp_path / "pulumi-calls.log"
    reconciler.stacks.command = recording_cli(tmp_path / "cli", log)

    instance_id = new_instance(prov_db, prov_settings, "quiet")
    reconciler.drain()
    row = instance(prov_db, instance_id)
    assert row.status == "ready", row.status_message  # the program got every secret it needs

    calls = log.read_text()
    for value in WORKER_SECRETS.values():
        assert value not in calls
    argv = [line for line in calls.splitlines() if line.startswith("ARGV")]
    config = reconciler.stack_config(row)
    secrets = {key: text for key, (text, secret) in config.items() if secret}
    assert set(secrets) >= {"clawdet:llmApiKey", "clawdet:gatewayToken", "clawdet:sshPrivateKey"}
    for text in secrets.values():
        assert not any(text.strip() in line for line in argv)
    written = reconciler.stacks.written_config("quiet")
    assert all("secure" in written[key] for key in secrets)  # encrypted in the stack file

    # Encrypted in this process (the engine decrypted them: the instance is ready), never handed
    # to a CLI; writing the same config again leaves the file as it is.
    assert " config set " not in calls
    reconciler.stacks.configure(reconciler.stacks.stack("quiet"), config)
    assert reconciler.stacks.written_config("quiet") == written

    # The providers' own config goes with it: the sandbox finishes actions at once, so the hcloud
    # provider asks every 50ms; a platform without the setting leaves the provider's default.
    stack = reconciler.stacks.stack("quiet")
    assert stack.get_config("hcloud:pollInterval").value == "50ms"
    target = reconciler.stacks.target
    reconciler.stacks.target = dataclasses.replace(target, hcloud_poll_interval="")
    try:
        reconciler.stacks.configure(stack, config)
        assert "hcloud:pollInterval" not in reconciler.stacks.written_config("quiet")
    finally:
        reconciler.stacks.target = target

    # The engine reads the file as YAML 1.2: a value that looks like a number there stays text.
    for text in ("08", "1e3", "0o17", "0123456789", "true"):
        reconciler.stacks.configure(stack, {**config, "clawdet:restarts": (text, False)})
        assert stack.get_config("clawdet:restarts").value == text
