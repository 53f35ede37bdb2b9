"""The stand-in provider plugins, freshly built and installed into a PULUMI_HOME of the test run."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def standin_toolchain(tmp_path_factory):
    """The toolchain with a PULUMI_HOME of its own that holds the freshly built stand-ins."""
    import toolchain
    from toolchain import standins as standin_build

    found = toolchain.find()
    if found is None:
        pytest.fail(
            "the Pulumi toolchain is not built: run `python -m toolchain ensure` (make toolchain) first"
        )
    try:
        binaries = standin_build.build_standins(
            toolchain.cache_root() / toolchain.cache_key(found.versions) / "standin-plugins",
            found.versions,
            log=print,
        )
        own = dataclasses.replace(found, pulumi_home=tmp_path_factory.mktemp("pulumi-home"))
        standin_build.install_standins(own, binaries, log=print)
    except standin_build.StandinBuildError as exc:
        pytest.fail(f"the stand-in provider plugins could not be built or installed: {exc}")
    missing = [name for name in standin_build.NAMES if not own.has_plugin(name)]
    if missing:
        pytest.fail(f"stand-in plugins not installed: {', '.join(missing)}")
    return own


def local_stack(tc, project: Path, backend: Path, passphrase: str, **env: str):
    """A stack `dev` of the Pulumi project in `project`, with a file:// backend, on toolchain `tc`."""
    from pulumi import automation as auto

    backend.mkdir()
    workspace = auto.LocalWorkspace(
        work_dir=str(project),
        pulumi_home=str(tc.pulumi_home),
        env_vars={
            **tc.env({"PATH": os.environ.get("PATH", "")}),
            "PULUMI_BACKEND_URL": f"file://{backend}",
            "PULUMI_CONFIG_PASSPHRASE": passphrase,
            **env,
        },
        pulumi_command=auto.PulumiCommand(root=str(tc.root)),
        secrets_provider="passphrase",
    )
    return auto.Stack.create("dev", workspace)
