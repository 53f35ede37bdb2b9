"""Build and install Clawdet's OFFLINE STAND-IN provider plugins (hcloud, cloudflare, command).

    python -m toolchain.standins          # build them all, install them into the toolchain

The real plugins (pulumi-resource-hcloud 1.39.1, pulumi-resource-cloudflare 6.17.0,
pulumi-resource-command 1.2.1) cannot be built here: the Go module proxy does not serve their
modules. ``toolchain/standin-providers/`` holds small Go plugins that implement only the resources
Clawdet's program uses, with the real type tokens and property names. Use them only when the real
plugins cannot be installed.

Standard library only, like toolchain.engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "standin-providers"
NAMES = ("hcloud", "cloudflare", "command")
MARKER = "CLAWDET-STANDIN"  # written into the installed plugin directory
DOWNLOAD_TIMEOUT = 900
BUILD_TIMEOUT = 1800
INSTALL_TIMEOUT = 300
ATTEMPTS = 3
Log = Callable[[str], None]


class StandinBuildError(RuntimeError):
    """The stand-in plugins could not be built or installed; the message says why."""


def _go() -> str:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None
    )
    if not go:
        raise StandinBuildError(
            "Go is not installed: the stand-in provider plugins are built with Go >= 1.25"
        )
    return go


def _go_env() -> dict[str, str]:
    return {
        **os.environ,
        "GOWORK": "off",
        "CGO_ENABLED": "0",
        "GOFLAGS": (os.environ.get("GOFLAGS", "") + " -mod=mod -buildvcs=false").strip(),
    }


def _source_digest(versions: Mapping[str, str]) -> str:
    digest = hashlib.sha256(json.dumps({n: versions[n] for n in NAMES}, sort_keys=True).encode())
    for path in sorted(SOURCE.rglob("*")):
        if path.is_file() and (path.suffix in (".go", ".mod", ".sum")):
            digest.update(str(path.relative_to(SOURCE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _run(
    args: list[str], *, env: Mapping[str, str], timeout: int, what: str, log: Log, attempts: int = 1
) -> None:
    for attempt in range(1, attempts + 1):
        try:
            out = subprocess.run(
                args, cwd=SOURCE, env=dict(env), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            problem = f"timed out after {timeout}s"
        else:
            if out.returncode == 0:
                return
            problem = (out.stderr or out.stdout).strip()[-3000:]
        if attempt < attempts:
            log(
                f"  {what}: attempt {attempt} failed, retrying: {problem.splitlines()[-1] if problem else ''}"
            )
            time.sleep(5 * attempt)
    raise StandinBuildError(f"{what} failed: {problem}")


def build_standins(out_dir: Path, versions: Mapping[str, str], log: Log = print) -> dict[str, Path]:
    """Build pulumi-resource-{hcloud,cloudflare,command} stamped with ``versions[name]`` into ``out_dir``
    as ``pulumi-resource-NAME-vVERSION``; reuse them when the sources and pins are unchanged.
    Returns {name: binary}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    binaries = {n: out_dir / f"pulumi-resource-{n}-v{versions[n]}" for n in NAMES}
    stamp = out_dir / "standin-build.json"
    digest = _source_digest(versions)
    if stamp.is_file() and all(os.access(b, os.X_OK) for b in binaries.values()):
        try:
            if json.loads(stamp.read_text()).get("digest") == digest:
                log(f"standin: reusing the stand-in plugins in {out_dir}")
                return binaries
        except ValueError:
            pass
    go, env = _go(), _go_env()
    started = time.monotonic()
    log(f"standin: downloading Go modules for {SOURCE} (module proxy)")
    _run(
        [go, "mod", "download"],
        env=env,
        timeout=DOWNLOAD_TIMEOUT,
        what="go mod download",
        log=log,
        attempts=ATTEMPTS,
    )
    for name, binary in binaries.items():
        log(f"standin: building pulumi-resource-{name} v{versions[name]} (offline stand-in)")
        tmp = binary.with_name(binary.name + f".tmp{os.getpid()}")
        _run(
            [
                go,
                "build",
                "-trimpath",
                "-ldflags",
                f"-s -w -X main.version={versions[name]}",
                "-o",
                str(tmp),
                f"./cmd/pulumi-resource-{name}",
            ],
            env=env,
            timeout=BUILD_TIMEOUT,
            what=f"go build pulumi-resource-{name}",
            log=log,
        )
        os.replace(tmp, binary)
    stamp.write_text(json.dumps({"digest": digest, "versions": {n: versions[n] for n in NAMES}}) + "\n")
    log(
        f"standin: built in {time.monotonic() - started:.1f}s: "
        + ", ".join(f"{b.name} ({b.stat().st_size / 2**20:.1f} MiB)" for b in binaries.values())
    )
    return binaries


def install_standins(tc, binaries: Mapping[str, Path], log: Log = print) -> None:
    """Install the built binaries into the toolchain's PULUMI_HOME (``tc`` is a
    toolchain.Toolchain) and mark each plugin directory as a stand-in."""
    for name, binary in binaries.items():
        version = tc.versions[name]
        log(f"standin: installing {binary.name} as resource plugin {name} {version} into {tc.pulumi_home}")
        try:
            out = subprocess.run(
                [
                    str(tc.pulumi),
                    "plugin",
                    "install",
                    "resource",
                    name,
                    version,
                    "--file",
                    str(binary),
                    "--reinstall",
                ],
                env=tc.env(),
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise StandinBuildError(
                f"pulumi plugin install {name} timed out after {INSTALL_TIMEOUT}s"
            ) from None
        if out.returncode != 0 or not tc.has_plugin(name):
            raise StandinBuildError(
                f"installing the stand-in plugin {name} {version} failed: "
                f"{(out.stderr or out.stdout).strip()}"
            )
        (tc.plugin_dir(name) / MARKER).write_text(
            "Clawdet's offline stand-in provider (toolchain/standin-providers), not the real plugin.\n"
            f"digest: {_source_digest(tc.versions)}\n"
        )


def wanted_standins(tc, *, force: bool = False) -> list[str]:
    """The stand-ins to build: for each missing plugin, and for each installed stand-in whose
    Go source changed since it was built (or every stand-in, with `force`)."""
    current = _source_digest(tc.versions)
    return [
        n
        for n in NAMES
        if not tc.has_plugin(n) or (is_standin(tc, n) and (force or installed_digest(tc, n) != current))
    ]


def is_standin(tc, name: str) -> bool:
    """Whether the installed plugin ``name`` is the stand-in (not the real provider)."""
    return (tc.plugin_dir(name) / MARKER).is_file()


def installed_digest(tc, name: str) -> str | None:
    """The source digest the installed stand-in was built from (None: unknown, an old build)."""
    for line in (tc.plugin_dir(name) / MARKER).read_text().splitlines():
        if line.startswith("digest: "):
            return line.removeprefix("digest: ").strip()
    return None


def ensure_standins(tc, log: Log = print, *, force: bool = False) -> list[str]:
    """Build and install the stand-ins for those of NAMES that are missing (or, with
    ``force``, also replace installed stand-ins by a fresh build); a real plugin is never
    replaced. Returns the names installed."""
    wanted = wanted_standins(tc, force=force)
    if not wanted:
        return []
    missing = [n for n in wanted if not tc.has_plugin(n)]
    if missing:
        log(
            "standin: WARNING the real provider plugins "
            + ", ".join(f"{n} {tc.versions[n]}" for n in missing)
            + " are missing; using Clawdet's OFFLINE STAND-INs (only the resources Clawdet uses). With "
            "internet access install the real ones: "
            + "; ".join(f"pulumi plugin install resource {n} {tc.versions[n]}" for n in missing)
        )
    if rebuilt := [n for n in wanted if n not in missing]:
        log(f"standin: rebuilding the installed stand-ins {', '.join(rebuilt)} from their current Go source")
    binaries = build_standins(tc.pulumi_home.parent / "standin-plugins", tc.versions, log)
    install_standins(tc, {n: binaries[n] for n in wanted}, log)
    return wanted


def main() -> int:
    sys.path.insert(0, str(HERE.parent))
    import toolchain

    tc = toolchain.find()
    if tc is None:
        print(
            "standin: the Pulumi toolchain is not built; run `python -m toolchain ensure`",
            file=sys.stderr,
        )
        return 1
    try:
        installed = ensure_standins(tc, force=True)
    except StandinBuildError as exc:
        print(f"standin: ERROR {exc}", file=sys.stderr)
        return 2
    for name in NAMES:
        kind = "stand-in" if is_standin(tc, name) else "real plugin"
        print(f"  {tc.plugin_dir(name) / f'pulumi-resource-{name}'}  ({kind})")
    if not installed:
        print("standin: nothing to do (the plugins are installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
