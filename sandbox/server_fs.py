"""A fake server's file system: its folder (``servers/<id>/``) is ``/``, and each mounted volume's
data folder is mounted at its mount point.

A mount is a symlink from the mount point to the volume's folder, so every path the server uses
works with plain file operations. ``ServerFS`` maps the server's paths to the host's and refuses
any that resolve (through ``..`` or a symlink) outside the server's folder and its mounted volumes.
"""

from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Mapping
from pathlib import Path

HOME = "/root"


class OutsideServer(PermissionError):
    """The path resolves outside the server's file system."""


def normalize(path: str, cwd: str = "/") -> str:
    """An absolute, normalized path of the server (``..`` stops at ``/``, as in a chroot)."""
    joined = posixpath.normpath(posixpath.join("/", cwd, path))
    return "/" + joined.lstrip("/")


@functools.lru_cache(maxsize=4096)
def _resolved(folder: Path) -> Path:
    """A server's or a volume's folder with symlinks resolved (folders that never move)."""
    return Path(os.path.realpath(folder))


class ServerFS:
    def __init__(self, root: Path, mounts: Mapping[str, Path] | None = None) -> None:
        self.root = _resolved(Path(root))
        self.mounts = {normalize(point): _resolved(Path(data)) for point, data in (mounts or {}).items()}

    def host(self, path: str, cwd: str = "/") -> Path:
        """The host path of a server path; the final symlink is not followed, but where it leads
        must stay inside."""
        lexical = self.root / normalize(path, cwd).lstrip("/")
        if self.guest(lexical) is None:
            raise OutsideServer(f"{path}: outside the server's file system")
        return lexical

    def guest(self, host: Path | str) -> str | None:
        """Where the server sees a host path (after resolving symlinks); None when it cannot."""
        real = Path(os.path.realpath(host))
        for data, point in sorted(((d, p) for p, d in self.mounts.items()), key=lambda a: -len(str(a[0]))):
            if real == data or data in real.parents:
                return normalize(str(real.relative_to(data)), point)
        if real == self.root or self.root in real.parents:
            return normalize(str(real.relative_to(self.root)))
        return None

    def is_mount_point(self, path: str, cwd: str = "/") -> bool:
        return normalize(path, cwd) in self.mounts


def mount(root: Path, point: str, data: Path) -> None:
    """Mounts a volume's folder at ``point``: an empty folder there becomes the symlink."""
    target = root / normalize(point).lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        target.rmdir()  # mounting over files would hide them; an OSError says so
    target.symlink_to(data, target_is_directory=True)


def unmount(root: Path, point: str) -> None:
    """The mount point is an empty folder again."""
    target = root / normalize(point).lstrip("/")
    if target.is_symlink():
        target.unlink()
        target.mkdir()
