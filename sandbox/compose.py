"""Docker Compose as a fake server's Docker would read a project: the compose file, its env files
and its bind mounts, with compose's own error messages.

Only what the sandbox needs: a project is loaded and checked the way `docker compose config`
checks it (YAML, services with an image, env files that exist, volumes, networks and services
that are declared), and the gateway service's files are read for the gateway to start from.
"""

from __future__ import annotations

import copy
import dataclasses
import posixpath
import re
from typing import Any

import yaml

from .cloud_init import GATEWAY_SERVICE, env_file_names
from .server_fs import OutsideServer, ServerFS, normalize

FILE_LIMIT = 1024 * 1024  # bytes of a bind-mounted file the gateway reads


class ComposeError(Exception):
    """Compose (or the Docker daemon) refused; the message is what it prints."""


@dataclasses.dataclass(frozen=True)
class Mount:
    source: str  # absolute path on the server, or a named volume
    target: str
    read_only: bool
    bind: bool
    create_host_path: bool  # Docker creates a missing bind source (short syntax) or refuses


@dataclasses.dataclass(frozen=True)
class Project:
    path: str  # the compose file on the server
    name: str
    document: dict[str, Any]

    @property
    def directory(self) -> str:
        return posixpath.dirname(self.path)

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self.document["services"]

    @property
    def gateway(self) -> dict[str, Any] | None:
        return self.services.get(GATEWAY_SERVICE)

    def container_name(self, service: str) -> str:
        return f"{self.name}-{service}-1"

    def env_files(self, service: dict[str, Any]) -> list[tuple[str, bool]]:
        """(path on the server, required) of each env_file entry."""
        value = service.get("env_file")
        entries = value if isinstance(value, list) else [] if value is None else [value]
        names = env_file_names(service)
        return [
            (normalize(name, self.directory), not (isinstance(e, dict) and e.get("required") is False))
            for name, e in zip(names, entries, strict=True)
        ]

    def mounts(self, service: dict[str, Any]) -> list[Mount]:
        found = []
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):
                bind = volume.get("type") == "bind"
                source, target = str(volume.get("source", "")), str(volume.get("target", ""))
                read_only = bool(volume.get("read_only"))
                create = bool((volume.get("bind") or {}).get("create_host_path", True))
            else:
                parts = str(volume).split(":")
                source, target, options = (
                    ("", parts[0], []) if len(parts) == 1 else (parts[0], parts[1], parts[2:])
                )
                read_only = "ro" in ",".join(options).split(",")
                source = "/root" + source[1:] if source.startswith("~") else source
                bind = source.startswith((".", "/"))
                create = True
            if bind:
                source = normalize(source, self.directory)
            found.append(Mount(source, target, read_only, bind, create))
        return found


def _project_name(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


def load(fs: ServerFS, path: str, project_name: str | None = None, cwd: str = "/") -> Project:
    """The project as `docker compose --file PATH` reads it, or ComposeError."""
    path = normalize(path, cwd)
    try:
        text = fs.host(path).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise ComposeError(f"open {path}: no such file or directory")
    except IsADirectoryError:
        raise ComposeError(f"read {path}: is a directory")
    except (OutsideServer, PermissionError):
        raise ComposeError(f"open {path}: permission denied")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise ComposeError(f"yaml: {line}{getattr(exc, 'problem', None) or exc}")
    if document is None:
        raise ComposeError(f"empty compose file: {path}")
    if not isinstance(document, dict):
        raise ComposeError(f"{path}: Top-level object must be a mapping")
    services = document.get("services")
    if not isinstance(services, dict) or not services:
        raise ComposeError("no service selected" if services in (None, {}) else "services must be a mapping")
    name = _project_name(
        project_name or str(document.get("name") or posixpath.basename(posixpath.dirname(path)))
    )
    if not name:
        raise ComposeError("project name must not be empty")
    project = Project(path, name, document)
    _check(fs, project)
    return project


def _declared(document: dict[str, Any], section: str) -> set[str]:
    value = document.get(section)
    return set(value) if isinstance(value, dict) else set()


def _check(fs: ServerFS, project: Project) -> None:
    volumes = _declared(project.document, "volumes")
    networks = _declared(project.document, "networks") | {"default"}
    for name, service in project.services.items():
        if not isinstance(service, dict):
            raise ComposeError(f"services.{name} must be a mapping")
        if not service.get("image") and not service.get("build"):
            raise ComposeError(
                f'service "{name}" has neither an image nor a build context specified: '
                "invalid compose project"
            )
        for env_file, required in project.env_files(service):
            try:
                present = fs.host(env_file).is_file()
            except OutsideServer:
                present = False
            if required and not present:
                raise ComposeError(
                    f"env file {env_file} not found: stat {env_file}: no such file or directory"
                )
        for mount in project.mounts(service):
            if not mount.target:
                raise ComposeError(f"service {name}: volume is missing a target")
            if not mount.bind and mount.source and mount.source not in volumes:
                raise ComposeError(
                    f"service {name!r} refers to undefined volume {mount.source}: invalid compose project"
                )
        wanted = service.get("networks") or []
        for network in wanted if isinstance(wanted, list) else list(wanted):
            if network not in networks:
                raise ComposeError(
                    f"service {name!r} refers to undefined network {network}: invalid compose project"
                )
        depends = service.get("depends_on") or []
        for other in depends if isinstance(depends, list) else list(depends):
            if other not in project.services:
                raise ComposeError(
                    f'service "{name}" depends on undefined service "{other}": invalid compose project'
                )


def render(project: Project) -> str:
    """`docker compose config`: the project with its paths made absolute."""
    rest = {key: value for key, value in project.document.items() if key != "name"}
    document = copy.deepcopy({"name": project.name, **rest})
    for service in document["services"].values():
        if service.get("env_file") is not None:
            service["env_file"] = [path for path, _required in project.env_files(service)]
        for index, mount in enumerate(project.mounts(service)):
            if mount.bind:
                written = service["volumes"][index]
                bind = {"type": "bind", "source": mount.source, "target": mount.target}
                if isinstance(written, dict):
                    bind = {**written, **bind}
                elif mount.read_only:
                    bind["read_only"] = True
                service["volumes"][index] = bind
    return yaml.safe_dump(document, sort_keys=False)


def missing_bind_source(fs: ServerFS, project: Project, service: dict[str, Any]) -> str | None:
    """Docker's refusal to create a container whose bind source is missing (and may not be made);
    missing sources it may make are made, as Docker does."""
    for mount in project.mounts(service):
        if not mount.bind:
            continue
        try:
            source = fs.host(mount.source)
        except OutsideServer:
            return f'invalid mount config for type "bind": bind source path does not exist: {mount.source}'
        if source.exists():
            continue
        if not mount.create_host_path:
            return f'invalid mount config for type "bind": bind source path does not exist: {mount.source}'
        source.mkdir(parents=True, exist_ok=True)
    return None


def gateway_files(fs: ServerFS, project: Project) -> dict[str, str]:
    """What the gateway container sees of the server: the compose file, the gateway service's env
    files and the regular files bind-mounted into it (openclaw.json)."""
    files = {project.path: fs.host(project.path).read_text(encoding="utf-8", errors="replace")}
    service = project.gateway or {}
    paths = [path for path, _required in project.env_files(service)]
    paths += [mount.source for mount in project.mounts(service) if mount.bind]
    for path in paths:
        try:
            host = fs.host(path)
            if host.is_file() and host.stat().st_size <= FILE_LIMIT:
                files[path] = host.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    return files
