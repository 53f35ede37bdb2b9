"""The real Pulumi engine, driven through the Automation API, on a local project.

The toolchain (`make toolchain`, i.e. `python -m toolchain ensure`) provides the CLI and
the Python language host. The project keeps its state in a file:// backend under tmp_path and its
secrets with a passphrase. Its resource is a Python dynamic provider that manages a file through
the engine's full create/read/diff/update/delete cycle: the provider plugins (command, hcloud,
cloudflare) cannot be built offline here (see toolchain/README.md), the dynamic provider ships
with the SDK.
"""

from __future__ import annotations

import hashlib
import sys
import textwrap
from pathlib import Path

import pytest
from pulumi import automation as auto

import toolchain

pytestmark = pytest.mark.engine

PASSPHRASE = "engine-test-passphrase"

PROGRAM = '''
import hashlib
from pathlib import Path

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult


class FileProvider(ResourceProvider):
    """Keeps a text file with the given content; `read` reports what is on disk (for refresh)."""

    def create(self, props):
        Path(props["path"]).write_text(props["content"])
        return CreateResult(id_=props["path"], outs=dict(props))

    def read(self, id_, props):
        path = Path(id_)
        return ReadResult(id_, {**props, "content": path.read_text() if path.exists() else ""})

    def diff(self, id_, olds, news):
        changed = [k for k in ("path", "content") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=["path"] if "path" in changed else [])

    def update(self, id_, olds, news):
        Path(news["path"]).write_text(news["content"])
        return UpdateResult(outs=dict(news))

    def delete(self, id_, props):
        Path(id_).unlink(missing_ok=True)


class ManagedFile(Resource):
    content: pulumi.Output[str]

    def __init__(self, name, path, content, opts=None):
        super().__init__(FileProvider(), name, {"path": path, "content": content}, opts)


config = pulumi.Config()
token = config.require_secret("token")
greeting = f"hello {config.require('who')}\\n"
managed = ManagedFile("greeting", config.require("path"), greeting)
pulumi.export("content", managed.content)
pulumi.export("token_sha256", token.apply(lambda t: hashlib.sha256(t.encode()).hexdigest()))
'''


@pytest.fixture(scope="module")
def engine() -> toolchain.Toolchain:
    tc = toolchain.find()
    if tc is None:
        pytest.fail(
            "The Pulumi toolchain is missing: run `make toolchain` (python -m toolchain ensure) first.",
            pytrace=False,
        )
    return tc


def make_stack(engine: toolchain.Toolchain, tmp_path: Path) -> auto.Stack:
    project = tmp_path / "project"
    project.mkdir()
    # The program runs in the interpreter running this test: the project's virtualenv.
    (project / "Pulumi.yaml").write_text(
        textwrap.dedent(f"""\
        name: engine-check
        runtime:
          name: python
          options:
            virtualenv: {sys.prefix}
        """)
    )
    (project / "__main__.py").write_text(PROGRAM)
    (tmp_path / "state").mkdir()
    env = engine.env()
    env.update(PULUMI_BACKEND_URL=(tmp_path / "state").as_uri(), PULUMI_CONFIG_PASSPHRASE=PASSPHRASE)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(project),
        env_vars=env,
        secrets_provider="passphrase",
        pulumi_command=auto.PulumiCommand(root=str(engine.root)),
    )
    return auto.create_stack("dev", work_dir=str(project), opts=opts)


def test_up_preview_refresh_destroy(engine: toolchain.Toolchain, tmp_path: Path) -> None:
    managed = tmp_path / "greeting.txt"
    stack = make_stack(engine, tmp_path)
    stack.set_config("who", auto.ConfigValue("clawdet"))
    stack.set_config("path", auto.ConfigValue(str(managed)))
    stack.set_config("token", auto.ConfigValue("s3cret", secret=True))

    up = stack.up()
    assert up.summary.result == "succeeded"
    assert up.summary.resource_changes == {"create": 2}  # the stack and the file
    assert managed.read_text() == "hello clawdet\n"
    assert up.outputs["content"].value == "hello clawdet\n"
    assert up.outputs["token_sha256"].secret is True
    assert up.outputs["token_sha256"].value == hashlib.sha256(b"s3cret").hexdigest()
    state = stack.export_stack().deployment
    on_disk = "".join(p.read_text() for p in (tmp_path / "state").rglob("dev.json"))
    assert "ciphertext" in on_disk and "s3cret" not in on_disk  # the file backend keeps it encrypted
    assert [r["type"] for r in state["resources"]] == [
        "pulumi:pulumi:Stack",
        "pulumi:providers:pulumi-python",
        "pulumi-python:dynamic:Resource",
    ]

    preview = stack.preview(expect_no_changes=True)
    assert preview.change_summary == {auto.OpType.SAME: 2}

    # A change made behind the engine's back: refresh reads it into the state, up repairs it.
    managed.write_text("tampered\n")
    refresh = stack.refresh()
    assert refresh.summary.result == "succeeded"
    assert refresh.summary.resource_changes == {"same": 1, "update": 1}
    assert "tampered" in str(stack.export_stack().deployment["resources"][-1]["outputs"])
    repair = stack.up()
    assert repair.summary.resource_changes == {"same": 1, "update": 1}
    assert managed.read_text() == "hello clawdet\n"

    destroy = stack.destroy()
    assert destroy.summary.result == "succeeded"
    assert destroy.summary.resource_changes == {"delete": 2}
    assert not managed.exists()
    assert stack.export_stack().deployment.get("resources") in (None, [])


def test_the_workers_workspace_reads_the_outputs_a_secret_one_included(engine, tmp_path: Path) -> None:
    """Stacks reads the outputs in one run, masked; a masked (secret) output asks for its value."""
    from clawdet.reconciler.stacks import Workspace

    stack = make_stack(engine, tmp_path)
    stack.set_config("who", auto.ConfigValue("clawdet"))
    stack.set_config("path", auto.ConfigValue(str(tmp_path / "greeting.txt")))
    stack.set_config("token", auto.ConfigValue("s3cret", secret=True))
    stack.up()
    ours = stack.workspace
    workspace = Workspace(work_dir=ours.work_dir, env_vars=ours.env_vars, pulumi_command=ours.pulumi_command)
    outputs = workspace.stack_outputs("dev")
    assert outputs["content"].value == "hello clawdet\n"
    assert outputs["token_sha256"].value == hashlib.sha256(b"s3cret").hexdigest()
