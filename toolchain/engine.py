"""The Pulumi engine toolchain: find or build, offline, the CLI and plugins the Python SDK pins ask for.

    python -m toolchain ensure   # build or reuse; prints each binary's path and version
    python -m toolchain status   # what is there now, without building

Standard library only: it runs before the virtualenv has anything in it.

What ends up in the cache, ``${XDG_CACHE_HOME:-~/.cache}/clawdet/toolchain/<key>/`` (key = the pins
of the CLI, hcloud and cloudflare; see CACHE_KEY_PINS):

- ``bin/pulumi``: the CLI, built from the Go module ``github.com/pulumi/pulumi/pkg/v3`` at the
  ``pulumi`` pin, with its real version stamped in by ``-ldflags -X`` (so the Automation API's
  version check passes without PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK).
- ``bin/pulumi-language-python``: the Python language host. Upstream's own host is a Go module the
  proxy does not serve, so this is Clawdet's small host (``toolchain/language-host/``) built on the
  same SDK release; beside it the SDK's ``pulumi-language-python-exec`` runner and the
  ``pulumi-resource-pulumi-python`` script (Python dynamic providers), copied from ``sdk/v3``.
- ``home/``: the engine's own PULUMI_HOME. Provider plugins (command, hcloud, cloudflare) are
  installed into it with ``pulumi plugin install resource NAME VERSION --file ...`` from the user's
  Pulumi installation or from release archives; their Go modules are not served by the module proxy
  this project reaches, so they cannot be built here (``ensure`` says how to supply them). Missing
  ones get Clawdet's offline stand-ins (``toolchain.standins``).

If the official ``pulumi`` at the pinned version is on PATH with its language host beside it, that
installation is used and nothing is built. Go's module and build caches stay at Go's defaults
(GOMODCACHE, GOCACHE): they make a rebuild after a pin bump much faster.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

from toolchain import standins as standin_build

HERE = Path(__file__).resolve().parent
PYPROJECT = HERE.parent / "pyproject.toml"
LANGHOST_SOURCE = HERE / "language-host"
RECIPE = 1  # bump when the build steps change, so that old caches are not reused

SDK_MODULE = "github.com/pulumi/pulumi/sdk/v3"
PKG_MODULE = "github.com/pulumi/pulumi/pkg/v3"
VERSION_VAR = SDK_MODULE + "/go/common/version.Version"
PROVIDERS = ("hcloud", "cloudflare", "command")
PROVIDER_MODULES = {
    "hcloud": "github.com/pulumi/pulumi-hcloud/provider",
    "cloudflare": "github.com/pulumi/pulumi-cloudflare/provider/v6",
    "command": "github.com/pulumi/pulumi-command/provider",
}
# The pins that name the cache directory. Plugins install side by side by version into its home,
# so a provider added later stays out of the name: renaming the cache rebuilds the CLI (~10 min).
CACHE_KEY_PINS = ("pulumi", "hcloud", "cloudflare")
CORE_BINARIES = (
    "pulumi",
    "pulumi-language-python",
    "pulumi-language-python-exec",
    "pulumi-resource-pulumi-python",
)
INSTALL_HELP = (
    "Either install the Pulumi CLI {version} (https://www.pulumi.com/docs/install/, e.g. "
    "`curl -fsSL https://get.pulumi.com | sh -s -- --version {version}`) so that `pulumi` "
    "is on PATH, and its provider plugins with {plugins}; or install Go >= 1.25 so that "
    "the CLI can be built from the Go module proxy."
)

DOWNLOAD_TIMEOUT = 900  # seconds for one attempt of a download step
BUILD_TIMEOUT = 3600  # seconds for one `go build` (run with GOPROXY=off: no network)
ATTEMPTS = 3
Log = Callable[[str], None]


class ToolchainError(RuntimeError):
    """The toolchain cannot be found or made; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# Pins, cache location


def pins(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """The exact versions of the Python SDKs: {"pulumi": "3.259.0", "hcloud": "1.39.1", ...}."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    found = {}
    for dep in deps:
        match = re.fullmatch(r"\s*pulumi(?:-([a-z]+))?\s*==\s*([0-9][^\s;,]*)\s*", dep)
        if match:
            found[match.group(1) or "pulumi"] = match.group(2)
    missing = [name for name in ("pulumi", *PROVIDERS) if name not in found]
    if missing:
        raise ToolchainError(
            f"{pyproject} must pin exactly (==) the Pulumi packages: "
            + ", ".join("pulumi" if n == "pulumi" else f"pulumi-{n}" for n in missing)
        )
    return {name: found[name] for name in ("pulumi", *PROVIDERS)}


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clawdet" / "toolchain"


def cache_key(versions: Mapping[str, str]) -> str:
    return "-".join(f"{name}-{versions[name]}" for name in CACHE_KEY_PINS) + f"-r{RECIPE}"


# ---------------------------------------------------------------------------------------------
# The toolchain


@dataclasses.dataclass(frozen=True)
class Toolchain:
    bin_dir: Path  # pulumi, the language host and its scripts
    pulumi_home: Path  # PULUMI_HOME of the engine: plugins, credentials
    versions: dict[str, str]  # the pins: "pulumi" and each provider
    source: str  # "built" (our cache) or "path" (an existing installation)

    @property
    def pulumi(self) -> Path:
        return self.bin_dir / "pulumi"

    @property
    def root(self) -> Path:
        """For ``pulumi.automation.PulumiCommand(root=...)``, which runs ``root/bin/pulumi``."""
        return self.bin_dir.parent

    def plugin_dir(self, name: str) -> Path:
        return self.pulumi_home / "plugins" / f"resource-{name}-v{self.versions[name]}"

    def has_plugin(self, name: str) -> bool:
        d = self.plugin_dir(name)
        return (d / f"pulumi-resource-{name}").is_file() and not d.with_name(d.name + ".partial").exists()

    @property
    def missing_plugins(self) -> list[str]:
        return [name for name in PROVIDERS if not self.has_plugin(name)]

    def require_plugins(self, *names: str) -> None:
        """Raise with instructions when a provider plugin the caller needs is not installed."""
        missing = {n: self.versions[n] for n in names if not self.has_plugin(n)}
        if missing:
            raise ToolchainError(_plugin_help(missing))

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment to run the engine with (``base`` defaults to os.environ)."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = os.pathsep.join(p for p in (str(self.bin_dir), env.get("PATH", "")) if p)
        env.update(
            {
                "PULUMI_HOME": str(self.pulumi_home),
                # Never download anything: plugins come from PULUMI_HOME at the pinned version.
                "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                # Ignore stray pulumi-resource-* binaries on PATH (they could be any version); plugins
                # bundled beside the CLI, like the Python dynamic provider, still load.
                "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
                "PULUMI_SKIP_UPDATE_CHECK": "true",
            }
        )
        return env


def _plugin_help(missing: Mapping[str, str]) -> str:
    listed = ", ".join(f"{name} {version}" for name, version in missing.items())
    modules = ", ".join(PROVIDER_MODULES[name] for name in missing)
    return (
        f"provider plugins not installed: {listed}. They are not built from source: the Go "
        f"module proxy this project reaches does not serve {modules}. To supply them, either run "
        f"`pulumi plugin install resource NAME VERSION` on a machine with internet access (they "
        f"land in ~/.pulumi/plugins, where the next `make toolchain` takes them from), or put the "
        f"release archives pulumi-resource-NAME-vVERSION-linux-amd64.tar.gz (or bare binaries "
        f"named pulumi-resource-NAME-vVERSION) in a directory named by CLAWDET_PLUGIN_DIR and "
        f"run `make toolchain` again."
    )


def find() -> Toolchain | None:
    """The toolchain for the current pins if it is ready (built, or found on PATH); never builds."""
    versions = pins()
    home = cache_root() / cache_key(versions)
    if (home / "manifest.json").is_file() and all(
        os.access(home / "bin" / b, os.X_OK) for b in CORE_BINARIES
    ):
        return Toolchain(home / "bin", home / "home", versions, "built")
    bin_dir = _official_install(versions["pulumi"])
    if bin_dir:
        return Toolchain(bin_dir, home / "home", versions, "path")
    return None


def _official_install(version: str) -> Path | None:
    """The directory of a `pulumi` on PATH at exactly ``version`` with its Python host beside it
    (the layout of the official installer, ~/.pulumi/bin)."""
    found = shutil.which("pulumi")
    if not found:
        return None
    bin_dir = Path(found).resolve().parent
    try:
        out = subprocess.run(
            [str(bin_dir / "pulumi"), "version"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.stdout.strip().lstrip("v") != version:
        return None
    if not all(os.access(bin_dir / b, os.X_OK) for b in CORE_BINARIES[1:3]):
        return None
    return bin_dir


# ---------------------------------------------------------------------------------------------
# ensure


def ensure(log: Log = print) -> Toolchain:
    """Find or build the toolchain for the pins, install the provider plugins that can be found,
    and return it. Idempotent: with everything in place it only checks, in seconds."""
    versions = pins()
    cache = cache_root() / cache_key(versions)
    with _lock(cache):  # one build at a time; a second caller waits, then reuses it
        tc = find()
        if tc is not None:
            what = "the cached build" if tc.source == "built" else "the Pulumi CLI on PATH"
            log(f"toolchain: reusing {what} in {tc.bin_dir}")
        else:
            tc = _prepare_core(versions, cache, log)
        _install_plugins(tc, log)
        # Missing plugins get stand-ins; installed stand-ins are rebuilt when their source changed.
        if os.environ.get("CLAWDET_NO_STANDINS") != "1":
            try:
                standin_build.ensure_standins(tc, log)
            except standin_build.StandinBuildError as exc:
                log(f"toolchain: WARNING offline stand-in plugins not built: {exc}")
    _verify(tc, log)
    return tc


@contextlib.contextmanager
def _lock(cache: Path):
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prepare_core(versions: dict[str, str], cache: Path, log: Log) -> Toolchain:
    official = _official_install(versions["pulumi"])
    if official:
        log(f"toolchain: using the Pulumi CLI v{versions['pulumi']} on PATH ({official}); nothing to build")
        return Toolchain(official, cache / "home", versions, "path")
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None
    )
    if not go:
        raise ToolchainError(
            f"No Pulumi CLI v{versions['pulumi']} on PATH and no Go to build it. "
            + INSTALL_HELP.format(
                version=versions["pulumi"],
                plugins=" and ".join(
                    f"`pulumi plugin install resource {n} {versions[n]}`" for n in PROVIDERS
                ),
            )
        )
    stale = cache / "bin"
    if stale.exists():  # a bin/ without a manifest: an interrupted move; build again
        shutil.rmtree(stale)
    _build_core(Path(go), versions, cache, log)
    return Toolchain(cache / "bin", cache / "home", versions, "built")


def _write_manifest(cache: Path, data: dict) -> None:
    tmp = cache / f".manifest-{os.getpid()}.json"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, cache / "manifest.json")  # written last: its presence means "complete"


# ---------------------------------------------------------------------------------------------
# Building with Go


class _Go:
    def __init__(self, go: Path, log: Log):
        self.go, self.log = go, log
        self.env = {
            **os.environ,
            "GOWORK": "off",
            "CGO_ENABLED": "0",
            "GOFLAGS": (os.environ.get("GOFLAGS", "") + " -buildvcs=false").strip(),
        }

    def run(
        self, args: list[str], cwd: Path | None = None, *, timeout: int, offline: bool = False, what: str
    ) -> str:
        """Run go; network steps get ATTEMPTS tries with a pause, offline steps one."""
        env = {**self.env, "GOPROXY": "off"} if offline else self.env
        attempts = 1 if offline else ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                out = subprocess.run(
                    [str(self.go), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
                )
            except subprocess.TimeoutExpired:
                problem = f"timed out after {timeout}s"
            else:
                if out.returncode == 0:
                    return out.stdout
                problem = (out.stderr or out.stdout).strip()[-3000:]
                if re.search(r"\b(403|404|410)\b|not available|unknown revision", problem):
                    break  # the proxy said no: asking again will not change that
            if attempt < attempts:
                self.log(f"  {what}: attempt {attempt} failed, retrying: {problem.splitlines()[-1]}")
                time.sleep(10 * attempt)
        raise ToolchainError(f"{what} failed: {problem}")

    def download(self, *modules: str) -> dict[str, Path]:
        """Download modules; return where each landed."""
        out = self.run(
            ["mod", "download", "-json", *modules],
            timeout=DOWNLOAD_TIMEOUT,
            what="go mod download " + " ".join(modules),
        )
        dirs = {}
        for chunk in re.split(r"(?<=\n})\n", out.strip()):
            info = json.loads(chunk)
            dirs[f"{info['Path']}@{info['Version']}"] = Path(info["Dir"])
        return dirs

    def build(self, module_dir: Path, package: str, output: Path, ldflags: str, what: str) -> None:
        """Fetch what ``package`` needs (network, retried), then compile it with the network off."""
        self.run(
            ["list", "-deps", package],
            module_dir,
            timeout=DOWNLOAD_TIMEOUT,
            what=f"{what}: downloading dependencies",
        )
        self.run(
            [
                "build",
                "-trimpath",
                "-p",
                str(os.cpu_count() or 2),
                "-ldflags",
                ldflags,
                "-o",
                str(output),
                package,
            ],
            module_dir,
            timeout=BUILD_TIMEOUT,
            offline=True,
            what=f"{what}: go build",
        )


def _writable_copy(src: Path, dst: Path) -> Path:
    """Module cache directories are read-only; builds that edit go.mod work on a copy."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*_test.go", "testdata"))
    for root, dirs, files in os.walk(dst):
        for name in dirs + files:
            path = os.path.join(root, name)
            os.chmod(path, os.stat(path).st_mode | 0o200)
    return dst


def _build_core(go_bin: Path, versions: dict[str, str], cache: Path, log: Log) -> None:
    go = _Go(go_bin, log)
    version = "v" + versions["pulumi"]
    stamp = f"-s -w -X {VERSION_VAR}={version}"
    go_version = go.run(["env", "GOVERSION"], timeout=60, offline=True, what="go env").strip()
    log(
        f"toolchain: building Pulumi {version} with {go_version} ({os.cpu_count()} cores); "
        f"a cold build takes 10-12 minutes on 2 cores"
    )
    for leftover in cache.parent.glob(f".build-{cache.name}-*"):  # from a build that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{cache.name}-", dir=cache.parent))
    timings: dict[str, float] = {}
    try:
        bin_dir = work / "bin"
        bin_dir.mkdir()

        start = time.monotonic()
        log(f"[1/4] downloading {SDK_MODULE}@{version} and {PKG_MODULE}@{version}")
        dirs = go.download(f"{SDK_MODULE}@{version}", f"{PKG_MODULE}@{version}")
        sdk_dir, pkg_dir = dirs[f"{SDK_MODULE}@{version}"], dirs[f"{PKG_MODULE}@{version}"]
        timings["download"] = time.monotonic() - start

        start = time.monotonic()
        log("[2/4] building pulumi (the CLI and engine)")
        # pkg/go.mod points sdk/v3 at ../sdk (the repository layout); point it at the SDK module.
        pkg = _writable_copy(pkg_dir, work / "src" / "pkg")
        go.run(
            ["mod", "edit", f"-replace={SDK_MODULE}={sdk_dir}"],
            pkg,
            timeout=60,
            offline=True,
            what="go mod edit",
        )
        go.build(pkg, "./cmd/pulumi", bin_dir / "pulumi", stamp, "pulumi")
        timings["pulumi"] = time.monotonic() - start
        log(f"      pulumi built in {timings['pulumi']:.0f}s")

        start = time.monotonic()
        log("[3/4] building pulumi-language-python")
        host = _writable_copy(LANGHOST_SOURCE, work / "src" / "pulumi-language-python")
        if f"{SDK_MODULE} {version}\n" not in (host / "go.mod").read_text():  # pins were bumped
            go.run(["get", f"{SDK_MODULE}@{version}"], host, timeout=DOWNLOAD_TIMEOUT, what="go get")
            go.run(["mod", "tidy"], host, timeout=DOWNLOAD_TIMEOUT, what="go mod tidy")
        go.build(
            host,
            ".",
            bin_dir / "pulumi-language-python",
            f"{stamp} -X main.version={version}",
            "pulumi-language-python",
        )
        timings["pulumi-language-python"] = time.monotonic() - start
        log(f"      pulumi-language-python built in {timings['pulumi-language-python']:.0f}s")

        log("[4/4] adding the SDK's Python runner scripts")
        for script in ("cmd/pulumi-language-python-exec", "dist/pulumi-resource-pulumi-python"):
            target = bin_dir / Path(script).name
            shutil.copyfile(sdk_dir / "python" / script, target)
            target.chmod(0o755)
        shutil.rmtree(work / "src")

        # Move into place: bin/ in one rename, then the manifest that marks the cache complete.
        os.rename(bin_dir, cache / "bin")
        _write_manifest(
            cache,
            {
                "source": "built",
                "versions": versions,
                "go": go_version,
                "seconds": {k: round(v) for k, v in timings.items()},
            },
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"toolchain: built in {sum(timings.values()):.0f}s")


# ---------------------------------------------------------------------------------------------
# Provider plugins


def _install_plugins(tc: Toolchain, log: Log) -> None:
    """Install each provider plugin that has a source and is missing, or older than its source."""
    unavailable = {}
    for name in PROVIDERS:
        version = tc.versions[name]
        source = _plugin_source(name, version)
        installed = tc.plugin_dir(name) / f"pulumi-resource-{name}"
        if source is None:
            if not tc.has_plugin(name):
                unavailable[name] = version
            continue
        if (
            tc.has_plugin(name)
            and not standin_build.is_standin(tc, name)
            and installed.stat().st_mtime >= _newest_mtime(source)
        ):
            continue  # a stand-in always gives way to a real plugin
        log(f"toolchain: installing provider plugin {name} {version} from {source}")
        out = subprocess.run(
            [
                str(tc.pulumi),
                "plugin",
                "install",
                "resource",
                name,
                version,
                "--file",
                str(source),
                "--reinstall",
            ],
            env=tc.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0 or not tc.has_plugin(name):
            raise ToolchainError(
                f"installing plugin {name} {version} from {source} failed: "
                f"{(out.stderr or out.stdout).strip()}"
            )
    if unavailable:
        log(f"toolchain: WARNING {_plugin_help(unavailable)}")


def _newest_mtime(path: Path) -> float:
    if path.is_dir():
        return max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=0.0)
    return path.stat().st_mtime


def _plugin_source(name: str, version: str) -> Path | None:
    """An existing copy of the plugin at exactly this version: an official plugin directory, a
    release archive or a binary named after the version in CLAWDET_PLUGIN_DIR."""
    candidates = []
    user_home = os.environ.get("PULUMI_HOME") or str(Path.home() / ".pulumi")
    candidates.append(Path(user_home) / "plugins" / f"resource-{name}-v{version}")
    if os.environ.get("CLAWDET_PLUGIN_DIR"):
        d = Path(os.environ["CLAWDET_PLUGIN_DIR"])
        candidates += [
            d / f"pulumi-resource-{name}-v{version}-linux-amd64.tar.gz",
            d / f"pulumi-resource-{name}-v{version}",
        ]
    for path in candidates:
        if path.is_dir() and (path / f"pulumi-resource-{name}").is_file():
            return path
        if path.is_file():
            return path
    return None


# ---------------------------------------------------------------------------------------------
# Verification and the command line


def _verify(tc: Toolchain, log: Log) -> None:
    """Ask each binary its version: the CLI must be exactly the pin, plugins installed at theirs."""
    want = "v" + tc.versions["pulumi"]
    env = tc.env()
    got = subprocess.run(
        [str(tc.pulumi), "version"], env=env, capture_output=True, text=True, timeout=60
    ).stdout.strip()
    if got != want:
        raise ToolchainError(f"{tc.pulumi} reports version {got!r}, expected {want}")
    host = tc.bin_dir / "pulumi-language-python"
    host_version = (
        subprocess.run([str(host), "-version"], capture_output=True, text=True, timeout=60).stdout.strip()
        if tc.source == "built"
        else "(shipped with the CLI)"
    )
    listed = json.loads(
        subprocess.run(
            [str(tc.pulumi), "plugin", "ls", "--json"], env=env, capture_output=True, text=True, timeout=120
        ).stdout
        or "[]"
    )
    plugins = {(p["name"], p["version"]) for p in listed if p.get("kind") == "resource"}
    log(f"  {tc.pulumi}  {got}")
    log(f"  {host}  {host_version}")
    for script in CORE_BINARIES[2:]:
        log(f"  {tc.bin_dir / script}  (script of the Python SDK {want})")
    for name in PROVIDERS:
        version = tc.versions[name]
        if (name, version) in plugins:
            standin = "  (offline stand-in)" if standin_build.is_standin(tc, name) else ""
            log(f"  {tc.plugin_dir(name) / f'pulumi-resource-{name}'}  v{version}{standin}")
        else:
            log(f"  pulumi-resource-{name}  MISSING (v{version})")
    log(f"  PULUMI_HOME={tc.pulumi_home}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolchain", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["ensure", "status"])
    args = parser.parse_args(argv)
    # On SIGTERM unwind like on Ctrl-C: subprocess.run then kills `go`, and the temp dir goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.command == "ensure":
            tc = ensure()
        else:
            tc = find()
            if tc is None:
                print("toolchain: not built; run `python -m toolchain ensure` (make toolchain)")
                return 1
            _verify(tc, print)
    except ToolchainError as exc:
        print(f"toolchain: ERROR {exc}", file=sys.stderr)
        return 2
    if tc.missing_plugins:
        print(
            "toolchain: ready for programs that need no provider plugin; missing: "
            + ", ".join(tc.missing_plugins),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
