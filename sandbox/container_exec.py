"""Programs inside a fake server's gateway container: `docker compose exec`, `run` and `cp`.

The container is emulated the way real_gateway.py runs the gateway: the real OpenClaw CLI from
the npm package (`node dist/index.js ...` in the package's folder, as the image runs it), with
the compose service's environment and volumes mapped into the server's folder, HOME and TMPDIR
there too. Container paths in arguments are mapped the same way, so `openclaw backup create
--output /tmp/x.tar.gz` writes where `docker compose cp openclaw:/tmp/x.tar.gz ...` finds it.
Besides the CLI the container runs `rm [-f] PATH...`; anything else is not in its PATH (126).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path

from .cloud_init import GatewayConfig
from .openclaw import Install
from .real_gateway import container_environment, mounts, to_host
from .remote_shell import Result, remove

EXEC_TIMEOUT = 900.0  # seconds one program may run (a large backup)
OUTPUT_LIMIT = 1024 * 1024  # bytes of stdout/stderr kept


class Container:
    def __init__(
        self,
        install: Install | None,
        root: Path,
        config: GatewayConfig,
        volumes: dict[str, Path] | None = None,
    ):
        self.install, self.root, self.config = install, root, config
        self.table = {**mounts(root, config), **(volumes or {})}

    def host_path(self, path: str) -> Path:
        return Path(to_host(self.root, self.table, path))

    async def run(self, argv: list[str]) -> Result:
        if argv[:1] == ["rm"]:
            return remove(argv[1:], self.host_path)
        cli = openclaw_arguments(argv)
        if cli is None:
            return Result(
                126,
                stderr="OCI runtime exec failed: exec failed: unable to start container process: exec: "
                f'"{argv[0] if argv else ""}": executable file not found in $PATH: unknown\n',
            )
        if self.install is None:
            return Result(
                126, stderr="the sandbox has no OpenClaw CLI: run `python -m sandbox.openclaw ensure`\n"
            )
        args = [str(self.host_path(arg)) if arg.startswith("/") else arg for arg in cli]
        env = container_environment(self.root, self.table, self.config)
        process = await asyncio.create_subprocess_exec(
            str(self.install.node),
            "dist/index.js",
            *args,
            cwd=self.install.package_dir,
            env=self.install.env(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), EXEC_TIMEOUT)
        except (TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
        return Result(
            process.returncode or 0,
            out[:OUTPUT_LIMIT].decode(errors="replace"),
            err[:OUTPUT_LIMIT].decode(errors="replace"),
        )


def openclaw_arguments(argv: list[str]) -> list[str] | None:
    """The CLI's arguments in `node dist/index.js ARGS`, `node openclaw.mjs ARGS` or `openclaw ARGS`."""
    if argv[:1] == ["openclaw"]:
        return argv[1:]
    if len(argv) >= 2 and argv[0] == "node" and argv[1] in ("dist/index.js", "openclaw.mjs"):
        return argv[2:]
    return None


def copy(source: Path, target: Path) -> None:
    """`docker cp`: a file, or a folder with what is in it; into TARGET when it is a folder."""
    if target.is_dir():
        target = target / source.name
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copyfile(source, target)
