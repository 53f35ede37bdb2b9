"""The shell a fake server runs SSH exec requests in: simple commands joined by ``&&``, each a
program emulated against the server's own files (its folder, see server_fs.py).

Like ``sh -c``: the commands run in order until one fails, and the exit status is that of the
last one run. Shell syntax beyond ``&&`` (pipes, ``;``, ``||``, redirections, ``$`` expansion,
command substitution, backticks, subshells) is refused with exit status 2 before anything runs;
a program the sandbox does not emulate fails with ``sh: 1: NAME: not found`` and 127.

Programs: ``cloud-init status [--wait]``, ``cloud-init clean`` (a no-op: a server made from a
snapshot boots as a new server anyway), ``mountpoint [-q]``, ``mv``, ``chmod``, ``rmdir``,
``mkdir``, ``install`` (``-d``, or a file copy), ``resize2fs``, ``test``, ``true``, ``false``,
``sync``, ``echo``, ``cat``, ``rm`` and ``docker compose`` (``config``, ``up``, ``restart``,
``stop``, ``down``, ``ps``, and ``exec``, ``run``, ``cp`` for the gateway's container:
container_exec.py).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from . import compose
from .faults import FaultInjector
from .server_fs import HOME, OutsideServer, ServerFS, normalize

_OPERATOR_CHARACTERS = "&|;<>()"
MOUNTPOINT_NOT_MOUNTED = 32  # util-linux mountpoint(1): "not a mountpoint"


class ShellSyntaxError(ValueError):
    """The command uses shell syntax the emulated shell does not run (exit status 2)."""


@dataclasses.dataclass
class Result:
    status: int = 0
    stdout: str = ""
    stderr: str = ""


class Host(Protocol):
    """The fake server, as its programs see it."""

    def filesystem(self) -> ServerFS: ...

    def boot_status(self) -> str:
        """``running``, ``done`` or ``error`` (cloud-init's words)."""
        ...

    async def wait_for_boot(self) -> str: ...

    def attached_devices(self) -> set[str]:
        """The linux_device of every volume attached to the server."""
        ...

    async def compose_up(self, project: compose.Project, force_recreate: bool) -> list[str]: ...

    async def compose_restart(self, project: compose.Project) -> list[str]: ...

    async def compose_stop(self, project: compose.Project) -> list[str]: ...

    async def compose_down(self, project: compose.Project) -> list[str]: ...

    def compose_ps(self, project: compose.Project) -> list[tuple[str, str, str]]:
        """(container name, service, state) of the project's containers."""
        ...

    async def compose_exec(self, project: compose.Project, service: str, argv: list[str]) -> Result:
        """A program in the service's running container."""
        ...

    async def compose_run(
        self, project: compose.Project, service: str, argv: list[str], volumes: dict[str, str]
    ) -> Result:
        """A program in a one-off container of the service, with more volumes (host path: target)."""
        ...

    async def compose_cp(self, project: compose.Project, source: str, target: str) -> Result:
        """`docker compose cp`: one side is SERVICE:PATH."""
        ...


_EXPANSION = (
    "Syntax error: $ and ` (expansion, command substitution) are not supported by the sandbox's shell"
)


class Operator(str):
    """An unquoted shell operator (``&&``, ``|``, ``;`` ...)."""


def tokenize(command: str) -> list[str | Operator]:
    """Words (quotes removed) and operators, as sh splits them; ShellSyntaxError for what the
    emulated shell refuses."""
    tokens: list[str | Operator] = []
    word: list[str] | None = None
    index = 0
    while index < len(command):
        char = command[index]
        if char in " \t":
            word = _end_word(tokens, word)
        elif char == "\n":
            raise ShellSyntaxError("more than one line: join commands with && (newlines are not supported)")
        elif char in _OPERATOR_CHARACTERS:
            word = _end_word(tokens, word)
            end = index
            while end < len(command) and command[end] in _OPERATOR_CHARACTERS:
                end += 1
            tokens.append(Operator(command[index:end]))
            index = end
            continue
        elif char == "#" and word is None:
            break
        elif char == "'":
            end = command.find("'", index + 1)
            if end < 0:
                raise ShellSyntaxError("Syntax error: Unterminated quoted string")
            word = (word or []) + [command[index + 1 : end]]
            index = end
        elif char == '"':
            word = word or []
            index = _double_quoted(command, index + 1, word)
        elif char == "\\":
            if index + 1 < len(command):
                word = (word or []) + [command[index + 1]]
            index += 1
        elif char in "$`":
            raise ShellSyntaxError(_EXPANSION)
        else:
            word = (word or []) + [char]
        index += 1
    _end_word(tokens, word)
    return tokens


def _end_word(tokens: list[str | Operator], word: list[str] | None) -> None:
    if word is not None:
        tokens.append("".join(word))


def _double_quoted(command: str, index: int, word: list[str]) -> int:
    while index < len(command):
        char = command[index]
        if char == '"':
            return index
        if char in "$`":
            raise ShellSyntaxError(_EXPANSION)
        if char == "\\" and index + 1 < len(command) and command[index + 1] in '$`"\\':
            index += 1
            char = command[index]
        word.append(char)
        index += 1
    raise ShellSyntaxError("Syntax error: Unterminated quoted string")


def parse(command: str) -> list[list[str]]:
    """The simple commands of an ``a && b && c`` list."""
    commands: list[list[str]] = [[]]
    for token in tokenize(command):
        if isinstance(token, Operator):
            if token != "&&":
                raise ShellSyntaxError(
                    f"Syntax error: {token!r} is not supported by the sandbox's shell "
                    "(only simple commands joined by &&)"
                )
            if not commands[-1]:
                raise ShellSyntaxError('Syntax error: "&&" unexpected')
            commands.append([])
        else:
            commands[-1].append(token)
    if not commands[-1]:
        if len(commands) > 1:
            raise ShellSyntaxError("Syntax error: end of file unexpected")
        return []
    return commands


Program = Callable[[list[str]], Awaitable[Result]]


class RemoteShell:
    def __init__(self, host: Host, faults: FaultInjector | None = None, service: str = "ssh") -> None:
        self.host = host
        self.faults, self.service = faults, service
        self.programs: dict[str, Program] = {
            "cloud-init": self.cloud_init,
            "mountpoint": self.mountpoint,
            "mv": self.mv,
            "chmod": self.chmod,
            "rmdir": self.rmdir,
            "rm": self.rm,
            "mkdir": self.mkdir,
            "install": self.install,
            "resize2fs": self.resize2fs,
            "test": self.test,
            "true": self.true,
            "false": self.false,
            "sync": self.true,
            "echo": self.echo,
            "cat": self.cat,
            "docker": self.docker,
        }

    async def run(self, command: str) -> Result:
        try:
            commands = parse(command)
        except ShellSyntaxError as exc:
            return Result(2, stderr=f"sh: 1: {exc}\n")
        out, err, status = [], [], 0
        for argv in commands:
            program = self.programs.get(argv[0])
            injected = self._injected(argv)
            if injected is not None:
                result = injected
            elif program is None:
                result = Result(127, stderr=f"sh: 1: {argv[0]}: not found\n")
            else:
                result = await program(argv[1:])
            out.append(result.stdout)
            err.append(result.stderr)
            status = result.status
            if status != 0:
                break
        return Result(status, "".join(out), "".join(err))

    def _injected(self, argv: list[str]) -> Result | None:
        """A fault rule (service ``ssh`` or ``ssh:<server id>``, method ``EXEC``, the command line
        as the path) makes this command fail with the rule's status as its exit status."""
        if self.faults is None:
            return None
        line = " ".join(argv)
        for service in (self.service, "ssh"):
            decision = self.faults.decide(service, "EXEC", line)
            if decision.fail_status is not None:
                return Result(decision.fail_status, stderr=f"{argv[0]}: failed (sandbox fault rule)\n")
        return None

    # -- paths ----------------------------------------------------------------------------
    def _path(self, path: str) -> Path:
        return self.host.filesystem().host(path, HOME)

    # -- programs -------------------------------------------------------------------------
    async def true(self, args: list[str]) -> Result:
        return Result(0)

    async def false(self, args: list[str]) -> Result:
        return Result(1)

    async def echo(self, args: list[str]) -> Result:
        newline = "\n"
        if args[:1] == ["-n"]:
            args, newline = args[1:], ""
        return Result(0, " ".join(args) + newline)

    async def cat(self, args: list[str]) -> Result:
        out, err, status = [], [], 0
        for name in args:
            try:
                out.append(self._path(name).read_text(errors="replace"))
            except OSError as exc:
                err.append(f"cat: {name}: {_reason(exc)}\n")
                status = 1
        return Result(status, "".join(out), "".join(err))

    async def cloud_init(self, args: list[str]) -> Result:
        if args[:1] == ["clean"]:
            unknown = set(args[1:]) - {"--logs", "-l", "--machine-id", "--seed", "-s"}
            if unknown:
                return Result(
                    2, stderr=f"cloud-init clean: unrecognized arguments: {' '.join(sorted(unknown))}\n"
                )
            return Result(0)
        if args[:1] != ["status"]:
            return Result(
                2, stderr="cloud-init: the sandbox emulates `cloud-init status [--wait]` and `clean` only\n"
            )
        status = await self.host.wait_for_boot() if "--wait" in args else self.host.boot_status()
        return Result(1 if status == "error" else 0, f"status: {status}\n")

    async def mountpoint(self, args: list[str]) -> Result:
        quiet = any(a in ("-q", "--quiet") for a in args)
        operands = [a for a in args if not a.startswith("-")]
        if len(operands) != 1:
            return Result(1, stderr="mountpoint: bad usage\nTry 'mountpoint --help' for more information.\n")
        path = operands[0]
        try:
            exists = self._path(path).exists()
        except OutsideServer:
            exists = False
        if not exists:
            return Result(1, stderr="" if quiet else f"mountpoint: {path}: No such file or directory\n")
        if self.host.filesystem().is_mount_point(path, HOME):
            return Result(0, "" if quiet else f"{path} is a mountpoint\n")
        return Result(MOUNTPOINT_NOT_MOUNTED, "" if quiet else f"{path} is not a mountpoint\n")

    async def mv(self, args: list[str]) -> Result:
        operands = [a for a in args if a not in ("-f", "--force", "-T", "--no-target-directory")]
        if any(a.startswith("-") for a in operands) or len(operands) != 2:
            return Result(1, stderr="mv: the sandbox emulates `mv [-f] [-T] SOURCE DEST` only\n")
        source_name, target_name = operands
        into_folder = not {"-T", "--no-target-directory"} & set(args)
        try:
            source, target = self._path(source_name), self._path(target_name)
            if not source.exists() and not source.is_symlink():
                return Result(1, stderr=f"mv: cannot stat '{source_name}': No such file or directory\n")
            if into_folder and target.is_dir():
                target = self._path(normalize(source.name, normalize(target_name, HOME)))
            if source.is_dir() and target.exists() and not target.is_dir():
                message = f"cannot overwrite non-directory '{target_name}' with directory '{source_name}'"
                return Result(1, stderr=f"mv: {message}\n")
            os.replace(source, target)
        except OSError as exc:
            return Result(1, stderr=f"mv: cannot move '{source_name}' to '{target_name}': {_reason(exc)}\n")
        return Result(0)

    async def chmod(self, args: list[str]) -> Result:
        if len(args) < 2:
            return Result(1, stderr="chmod: missing operand\n")
        mode_text, names = args[0], args[1:]
        try:
            mode = int(mode_text, 8)
            if not 0 <= mode <= 0o7777:
                raise ValueError
        except ValueError:
            return Result(1, stderr=f"chmod: invalid mode: '{mode_text}' (the sandbox takes octal modes)\n")
        for name in names:
            try:
                os.chmod(self._path(name), mode)
            except OSError as exc:
                return Result(1, stderr=f"chmod: cannot access '{name}': {_reason(exc)}\n")
        return Result(0)

    async def rm(self, args: list[str]) -> Result:
        return remove(args, self._path)

    async def rmdir(self, args: list[str]) -> Result:
        if not args:
            return Result(1, stderr="rmdir: missing operand\n")
        for name in args:
            try:
                self._path(name).rmdir()
            except OSError as exc:
                return Result(1, stderr=f"rmdir: failed to remove '{name}': {_reason(exc)}\n")
        return Result(0)

    async def mkdir(self, args: list[str]) -> Result:
        parents, mode, names = False, None, []
        options = iter(args)
        for arg in options:
            if arg in ("-p", "--parents"):
                parents = True
            elif arg == "-m":
                mode = next(options, "")
            elif arg.startswith("-"):
                return Result(1, stderr=f"mkdir: invalid option -- '{arg.lstrip('-')}'\n")
            else:
                names.append(arg)
        return self._make_folders("mkdir", names, parents, mode)

    async def install(self, args: list[str]) -> Result:
        directory, mode, names = False, "0755", []
        options = iter(args)
        for arg in options:
            if arg in ("-d", "--directory"):
                directory = True
            elif arg in ("-m", "-o", "-g"):
                value = next(options, "")
                mode = value if arg == "-m" else mode  # owners are not emulated
            elif arg.startswith("-"):
                return Result(1, stderr=f"install: invalid option -- '{arg.lstrip('-')}'\n")
            else:
                names.append(arg)
        if directory:
            return self._make_folders("install", names, True, mode)
        return self._install_file(names, mode)

    def _install_file(self, names: list[str], mode: str) -> Result:
        """`install [-m MODE] SOURCE DEST`: a copy of SOURCE at DEST with MODE (0755 by default)."""
        if len(names) != 2:
            return Result(1, stderr="install: the sandbox emulates `install [-m MODE] SOURCE DEST`\n")
        source, target = names
        try:
            permissions = int(mode, 8)
        except ValueError:
            return Result(1, stderr=f"install: invalid mode '{mode}'\n")
        try:
            data = self._path(source).read_bytes()
            destination = self._path(target)
            if destination.is_dir():
                destination = destination / Path(source).name
            destination.write_bytes(data)
            os.chmod(destination, permissions)
        except (OSError, OutsideServer) as exc:
            return Result(1, stderr=f"install: cannot stat '{source}': {_reason(exc)}\n")
        return Result(0)

    async def resize2fs(self, args: list[str]) -> Result:
        """Grows a mounted volume's file system to the volume's size (the sandbox's disks are
        folders: nothing to grow, but the device must be one attached to this server)."""
        devices = [a for a in args if not a.startswith("-")]
        if len(devices) != 1:
            return Result(
                1, stderr="Usage: resize2fs [-d debug_flags] [-f] [-F] [-M] [-P] device [new_size]\n"
            )
        if devices[0] not in self.host.attached_devices():
            return Result(
                1, stderr=f"resize2fs: No such file or directory while trying to open {devices[0]}\n"
            )
        return Result(0, f"The filesystem on {devices[0]} is now as large as its volume.\n")

    def _make_folders(self, program: str, names: list[str], parents: bool, mode: str | None) -> Result:
        if not names:
            return Result(1, stderr=f"{program}: missing operand\n")
        try:
            permissions = int(mode, 8) if mode is not None else None
        except ValueError:
            return Result(1, stderr=f"{program}: invalid mode '{mode}'\n")
        for name in names:
            try:
                folder = self._path(name)
                folder.mkdir(parents=parents, exist_ok=parents)
                if permissions is not None:
                    os.chmod(folder, permissions)
            except OSError as exc:
                return Result(1, stderr=f"{program}: cannot create directory '{name}': {_reason(exc)}\n")
        return Result(0)

    async def test(self, args: list[str]) -> Result:
        if len(args) != 2 or args[0] not in ("-e", "-f", "-d"):
            return Result(2, stderr="test: the sandbox emulates `test -e|-f|-d PATH` only\n")
        try:
            mode = os.stat(self._path(args[1])).st_mode
        except (OSError, ValueError):
            return Result(1)
        holds = {"-e": True, "-f": stat.S_ISREG(mode), "-d": stat.S_ISDIR(mode)}[args[0]]
        return Result(0 if holds else 1)

    async def docker(self, args: list[str]) -> Result:
        if args[:1] != ["compose"]:
            name = args[0] if args else ""
            return Result(
                1,
                stderr=f"docker: '{name}' is not a docker command the sandbox emulates "
                "(docker compose config|up|restart|stop|down|ps)\n",
            )
        return await DockerCompose(self.host).run(args[1:])


class DockerCompose:
    """`docker compose [--file F] [--project-name N] COMMAND ...`."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def run(self, args: list[str]) -> Result:
        files, project_name = [], None
        while args and args[0].startswith("-"):
            flag, args = args[0], args[1:]
            if "=" in flag:
                flag, value = flag.split("=", 1)
            elif args:
                value, args = args[0], args[1:]
            else:
                return Result(1, stderr=f"flag needs an argument: {flag}\n")
            if flag in ("-f", "--file"):
                files.append(value)
            elif flag in ("-p", "--project-name"):
                project_name = value
            else:
                return Result(1, stderr=f"unknown flag: {flag}\n")
        if not args:
            return Result(1, stderr="docker compose: a command is required\n")
        command, options = args[0], args[1:]
        handler = {
            "config": self.config,
            "up": self.up,
            "restart": self.restart,
            "stop": self.stop,
            "down": self.down,
            "ps": self.ps,
            "exec": self.exec,
            "run": self.run_one_off,
            "cp": self.cp,
        }.get(command)
        if handler is None:
            return Result(1, stderr=f'unknown docker command: "compose {command}"\n')
        if len(files) > 1:
            return Result(1, stderr="the sandbox's docker compose takes one --file\n")
        try:
            project = self._load(files[0] if files else None, project_name)
            return await handler(project, options)
        except compose.ComposeError as exc:
            return Result(1, stderr=f"{exc}\n")

    def _load(self, path: str | None, project_name: str | None) -> compose.Project:
        fs = self.host.filesystem()
        if path is None:
            path = next(
                (
                    normalize(name, HOME)
                    for name in ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
                    if fs.host(name, HOME).is_file()
                ),
                None,
            )
            if path is None:
                raise compose.ComposeError("no configuration file provided: not found")
        return compose.load(fs, path, project_name, cwd=HOME)

    @staticmethod
    def _unknown(options: list[str], allowed: set[str]) -> Result | None:
        for option in options:
            if option not in allowed:
                return Result(
                    1,
                    stderr=f"unknown flag: {option}\n" if option.startswith("-") else "too many arguments\n",
                )
        return None

    async def config(self, project: compose.Project, options: list[str]) -> Result:
        refused = self._unknown(options, {"--quiet", "-q"})
        if refused:
            return refused
        if options:
            return Result(0)
        return Result(0, compose.render(project))

    async def up(self, project: compose.Project, options: list[str]) -> Result:
        refused = self._unknown(options, {"--detach", "-d", "--force-recreate", "--remove-orphans"})
        if refused:
            return refused
        if not {"--detach", "-d"} & set(options):
            return Result(1, stderr="the sandbox runs `docker compose up` with --detach only\n")
        lines = await self.host.compose_up(project, "--force-recreate" in options)
        return Result(0, stderr="".join(f" {line}\n" for line in lines))

    async def restart(self, project: compose.Project, options: list[str]) -> Result:
        refused = self._unknown(options, set())
        return refused or Result(0, stderr=_lines(await self.host.compose_restart(project)))

    async def stop(self, project: compose.Project, options: list[str]) -> Result:
        refused = self._unknown(options, set())
        return refused or Result(0, stderr=_lines(await self.host.compose_stop(project)))

    async def down(self, project: compose.Project, options: list[str]) -> Result:
        refused = self._unknown(options, {"--remove-orphans"})
        return refused or Result(0, stderr=_lines(await self.host.compose_down(project)))

    async def exec(self, project: compose.Project, options: list[str]) -> Result:
        try:
            service, argv, _ = _service_and_command(options, _EXEC_FLAGS, with_volumes=False)
        except ValueError as exc:
            return Result(1, stderr=f"{exc}\n")
        return await self.host.compose_exec(project, service, argv)

    async def run_one_off(self, project: compose.Project, options: list[str]) -> Result:
        try:
            service, argv, volumes = _service_and_command(options, _RUN_FLAGS, with_volumes=True)
        except ValueError as exc:
            return Result(1, stderr=f"{exc}\n")
        if "--rm" not in options:
            return Result(1, stderr="the sandbox runs one-off containers with --rm only\n")
        return await self.host.compose_run(project, service, argv, volumes)

    async def cp(self, project: compose.Project, options: list[str]) -> Result:
        if len(options) != 2 or sum(":" in side for side in options) != 1:
            return Result(
                1,
                stderr="the sandbox emulates `docker compose cp SERVICE:SRC DEST` or `cp SRC SERVICE:DEST`\n",
            )
        return await self.host.compose_cp(project, options[0], options[1])

    async def ps(self, project: compose.Project, options: list[str]) -> Result:
        refused = self._unknown(options, set())
        if refused:
            return refused
        rows = [("NAME", "SERVICE", "STATUS"), *self.host.compose_ps(project)]
        return Result(0, "".join(f"{name:<28} {service:<12} {state}\n" for name, service, state in rows))


_EXEC_FLAGS = {"-T", "--no-TTY", "-i", "--interactive"}
_RUN_FLAGS = _EXEC_FLAGS | {"--rm", "--no-deps"}


def _service_and_command(
    options: list[str], flags: set[str], with_volumes: bool
) -> tuple[str, list[str], dict]:
    """SERVICE and COMMAND after the options a backup or restore uses; ValueError otherwise."""
    volumes: dict[str, str] = {}
    options = list(options)
    while options and options[0].startswith("-"):
        option = options.pop(0)
        if with_volumes and option in ("-v", "--volume") and options:
            source, _, target = options.pop(0).partition(":")
            if not source.startswith("/") or not target.startswith("/"):
                raise ValueError("the sandbox takes -v /HOST/PATH:/CONTAINER/PATH")
            volumes[source] = target.split(":")[0]
        elif option not in flags:
            raise ValueError(f"unknown flag: {option}")
    if len(options) < 2:
        raise ValueError("requires at least 2 arg(s): SERVICE COMMAND")
    return options[0], options[1:], volumes


def remove(args: list[str], resolve: Callable[[str], Path]) -> Result:
    """`rm [-f] [-r] PATH...` (a folder only with -r), each PATH resolved by `resolve`."""
    flags = {a for a in args if a.startswith("-")}
    if flags - {"-f", "-r", "-rf", "-fr", "--force", "--recursive"}:
        return Result(1, stderr="rm: the sandbox emulates `rm [-f] [-r] PATH...` only\n")
    force = bool(flags & {"-f", "-rf", "-fr", "--force"})
    recursive = bool(flags & {"-r", "-rf", "-fr", "--recursive"})
    for name in (a for a in args if not a.startswith("-")):
        try:
            path = resolve(name)
            if path.is_dir() and not path.is_symlink():
                if not recursive:
                    return Result(1, stderr=f"rm: cannot remove '{name}': Is a directory\n")
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            if not force:
                return Result(1, stderr=f"rm: cannot remove '{name}': No such file or directory\n")
        except OSError as exc:
            return Result(1, stderr=f"rm: cannot remove '{name}': {_reason(exc)}\n")
    return Result(0)


def _lines(lines: list[str]) -> str:
    return "".join(f" {line}\n" for line in lines)


def _reason(exc: OSError) -> str:
    if isinstance(exc, OutsideServer):
        return "Permission denied"
    return os.strerror(exc.errno) if exc.errno else str(exc)
