"""How the `pulumi` CLI is run: with only what the engine needs in its environment, and secret
config values on stdin, never on a command line.

The SDK's own command hands the CLI, and so every language host, program and provider plugin
it starts, the worker's whole environment (SECRET_KEY, DATABASE_URL, the LLM, X and SMTP
secrets), and `config set-all --secret key=value` puts secrets where any local user reads them
(`ps`, /proc/<pid>/cmdline).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from importlib import metadata

from pulumi.automation._cmd import CommandResult, PulumiCommand
from pulumi.automation.errors import create_command_error
from semver import VersionInfo

# Taken from the worker's environment: what any process needs, proxies, and the state
# backend's own credentials (PULUMI_ACCESS_TOKEN; AWS_*, GOOGLE_*, AZURE_* for s3://, gs://,
# azblob://). The rest the engine is
# given explicitly (Stacks.env: toolchain, backend URL, passphrase, the cloud's tokens).
ENGINE_VARIABLES = frozenset(
    {"PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR"}
    | {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"}
)
ENGINE_PREFIXES = ("PULUMI_", "AWS_", "GOOGLE_", "AZURE_")


def engine_environment(own: Mapping[str, str], outer: Mapping[str, str] | None = None) -> dict[str, str]:
    """`own` on top of the few variables of `outer` (default: this process's) the engine needs."""
    outer = os.environ if outer is None else outer
    kept = {k: v for k, v in outer.items() if k in ENGINE_VARIABLES or k.startswith(ENGINE_PREFIXES)}
    return {**kept, **own, "PULUMI_AUTOMATION_API": "true"}


class Fenced(RuntimeError):
    """This thread's operation was stopped: its worker could not renew its lease."""


class EngineCommand(PulumiCommand):
    """The CLI of our toolchain, built at the Python SDK's own version (so the SDK's probe, a
    `pulumi version` run with the whole environment, is skipped). It knows the processes each
    thread started, so a worker in doubt about its lease can stop its own engine (`fence`)."""

    def __init__(self, root: str):  # not super().__init__: that is the probe
        self.command = os.path.join(root, "bin", "pulumi")
        self.version = VersionInfo.parse(metadata.version("pulumi"))
        self._lock = threading.Lock()
        self._running: dict[int, set[subprocess.Popen]] = {}
        self._fenced: set[int] = set()

    def fence(self, thread_id: int, grace: float) -> None:
        """Stop the engine `thread_id` runs, and refuse it any other until `unfence`: SIGINT
        first (the CLI cancels and checkpoints), then, after `grace` seconds, SIGKILL to its
        whole process group: the program and the plugins, whose calls in flight (a remote
        deploy) would otherwise go on."""
        with self._lock:
            self._fenced.add(thread_id)
            processes = list(self._running.get(thread_id, ()))
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        if processes:
            killer = threading.Timer(grace, lambda: [_kill_group(p) for p in processes])
            killer.daemon = True
            killer.start()

    def unfence(self, thread_id: int) -> None:
        with self._lock:
            self._fenced.discard(thread_id)

    def run(
        self,
        args: list[str],
        cwd: str,
        additional_env: Mapping[str, str],
        on_output: Callable[[str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        *,
        stdin: str | None = None,
    ) -> CommandResult:
        if "--non-interactive" not in args:
            args = ["--non-interactive", *args]
        thread_id = threading.get_ident()
        with self._lock:
            if thread_id in self._fenced:
                raise Fenced("this worker's lease is in doubt; it starts no engine")
            process = subprocess.Popen(
                [self.command, *args],
                cwd=cwd,
                env=engine_environment(additional_env),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                encoding="utf-8",
                # Its own process group: a fence can stop the plugins too, and a worker's Ctrl-C
                # (finish what runs) does not reach it.
                start_new_session=True,
            )
            self._running.setdefault(thread_id, set()).add(process)
        try:
            readers = [
                _Reader(process.stdout, on_output),
                _Reader(process.stderr, on_error),
            ]
            if stdin is not None:
                try:
                    process.stdin.write(stdin)
                    process.stdin.close()
                except BrokenPipeError:
                    pass  # it exited without reading: its own error follows
            for reader in readers:
                reader.join()
            code = process.wait()
        finally:
            with self._lock:
                self._running[thread_id].discard(process)
            if process.poll() is None:
                process.kill()
        result = CommandResult(stdout=readers[0].text, stderr=readers[1].text, code=code)
        if code != 0:
            raise create_command_error(result)
        return result


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is gone already


class _Reader(threading.Thread):
    """Reads one of the CLI's streams line by line, handing each line on as it comes."""

    def __init__(self, stream, callback: Callable[[str], None] | None):
        super().__init__(daemon=True)
        self.stream, self.callback, self.lines = stream, callback, []
        self.start()

    def run(self) -> None:
        for line in iter(self.stream.readline, ""):
            line = line.rstrip()
            if self.callback:
                self.callback(line)
            self.lines.append(line)
        self.stream.close()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
