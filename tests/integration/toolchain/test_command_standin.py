"""Clawdet's offline stand-in for pulumi-command 1.2.1 (toolchain/standin-providers) driven by the
real engine and the unchanged Python SDK (pulumi_command 1.2.1): a tiny project in tmp_path that
copies files and runs commands over SSH on an asyncssh server of this test (commands run with
/bin/sh, SFTP on this machine's file system, under tmp_path).

It FAILS, never skips, when the toolchain or Go is missing.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
from pathlib import Path

import asyncssh
import pytest

from tests.integration.toolchain.conftest import local_stack

pytestmark = pytest.mark.engine

PROGRAM = """
import pulumi
import pulumi_command as command

config = pulumi.Config()
remote = config.require("remote")
connection = command.remote.ConnectionArgs(
    host="127.0.0.1", port=float(config.require_int("port")), user="root",
    private_key=config.require_secret("privateKey"), host_key=config.require("hostKey"),
    dial_error_limit=3, per_dial_timeout=5)
motd = command.remote.CopyToRemote(
    "motd", connection=connection, source=pulumi.Output.secret(pulumi.StringAsset(config.require("motd"))),
    remote_path=f"{remote}/etc/motd")
site = command.remote.CopyToRemote(
    "site", connection=connection, source=pulumi.FileArchive(config.require("site") + "/"),
    remote_path=f"{remote}/srv/site")
if config.get_bool("assetArchive"):
    command.remote.CopyToRemote(
        "bundle", connection=connection, remote_path=f"{remote}/bundle",
        source=pulumi.AssetArchive({"a.txt": pulumi.StringAsset("a")}))
setup = command.remote.Command(
    "setup", connection=connection, create=f"cat {remote}/etc/motd {remote}/srv/site/index.html",
    delete=f"touch {remote}/deleted", triggers=[config.get("generation") or "1"],
    opts=pulumi.ResourceOptions(depends_on=[motd, site]))
pulumi.export("stdout", setup.stdout)
"""


class LocalSSHServer:
    """asyncssh on 127.0.0.1 in a thread of its own, for one client key."""

    def __init__(self) -> None:
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def start(self) -> None:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _listen(self) -> asyncssh.SSHAcceptor:
        authorized = asyncssh.import_authorized_keys(self.client_key.export_public_key().decode())
        return await asyncssh.create_server(
            asyncssh.SSHServer,
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=authorized,
            process_factory=self._run,
            sftp_factory=True,
            allow_scp=False,
        )

    async def _run(self, process: asyncssh.SSHServerProcess) -> None:
        stdin = await process.stdin.read()
        shell = await asyncio.create_subprocess_shell(
            process.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await shell.communicate(stdin.encode())
        process.stdout.write(out.decode())
        process.stderr.write(err.decode())
        process.exit(shell.returncode or 0)


@pytest.fixture
def ssh_server():
    server = LocalSSHServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stack(standin_toolchain, ssh_server, tmp_path: Path):
    from pulumi import automation as auto

    project = tmp_path / "project"
    project.mkdir()
    (project / "__main__.py").write_text(textwrap.dedent(PROGRAM))
    (project / "Pulumi.yaml").write_text(
        textwrap.dedent(f"""\
        name: command-standin-check
        runtime:
          name: python
          options:
            toolchain: pip
            virtualenv: {Path(sys.executable).parent.parent}
        """)
    )
    site = tmp_path / "site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_text("<h1>hi</h1>\n")
    (site / "css" / "app.css").write_text("h1 {}\n")
    created = local_stack(standin_toolchain, project, tmp_path / "state", "command-standin-test")
    host_key = ssh_server.host_key.export_public_key().decode()
    private_key = ssh_server.client_key.export_private_key().decode()
    for key, value, secret in [
        ("remote", str(tmp_path / "remote"), False),
        ("port", str(ssh_server.port), False),
        ("privateKey", private_key, True),
        ("hostKey", host_key, False),
        ("motd", "v1\n", False),
        ("site", str(site), False),
    ]:
        created.set_config(key, auto.ConfigValue(value, secret=secret))
    yield created
    try:
        created.destroy(on_output=print)
    finally:
        created.workspace.remove_stack("dev", force=True)


def changes(result) -> dict[str, int]:
    return {k: v for k, v in (result.summary.resource_changes or {}).items() if k != "same"}


def test_copy_run_update_replace_and_refuse_an_asset_archive(stack, tmp_path):
    from pulumi import automation as auto

    remote = tmp_path / "remote"
    up = stack.up(on_output=print)
    assert up.outputs["stdout"].value == "v1\n<h1>hi</h1>"
    assert (remote / "etc" / "motd").read_text() == "v1\n"
    # FileArchive("site/"): the entries of the directory go into remotePath.
    assert (remote / "srv" / "site" / "css" / "app.css").read_text() == "h1 {}\n"

    resources = {r["urn"].rsplit("::", 1)[1]: r for r in stack.export_stack().deployment["resources"]}
    secret = "4dabf18193072939515e22adb298388d"
    for name in ("motd", "site", "setup"):
        assert secret in resources[name]["outputs"]["connection"], f"{name}: connection not secret"
    assert secret in resources["motd"]["outputs"]["source"]

    # Unchanged assets and archives compare by content: nothing to do.
    stack.preview(expect_no_changes=True, on_output=print)

    # A new text is an update of that copy alone; the command does not run again.
    stack.set_config("motd", auto.ConfigValue("v2\n"))
    assert changes(stack.up(on_output=print)) == {"update": 1}
    assert (remote / "etc" / "motd").read_text() == "v2\n"
    assert not (remote / "deleted").exists()

    # New triggers replace the command: the new one runs `create`, the old one `delete`.
    stack.set_config("generation", auto.ConfigValue("2"))
    replaced = stack.up(on_output=print)
    assert changes(replaced) == {"replace": 1}
    assert replaced.outputs["stdout"].value == "v2\n<h1>hi</h1>"
    assert (remote / "deleted").exists()

    # pulumi-command 1.2.1 copies text and file assets and file archives, not asset archives.
    stack.set_config("assetArchive", auto.ConfigValue("true"))
    with pytest.raises(auto.CommandError) as refused:
        stack.up(on_output=print)
    assert "archive must be a path to a file or directory" in str(refused.value)
    stack.remove_config("assetArchive")
