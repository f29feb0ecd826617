"""`hostrt cp`: copy between the host and a container's root filesystem (native containers)."""

from __future__ import annotations

import shutil
from pathlib import Path

from hostrt.engine.securejoin import secure_join
from hostrt.errors import NotFoundError


def _copy(source: Path, destination: Path) -> Path:
    """Copy a file or a tree; into `destination` if it is an existing directory (as cp does)."""
    if not source.exists() and not source.is_symlink():
        raise NotFoundError(f"no such file or directory: {source}")
    target = destination / source.name if destination.is_dir() else destination
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)
    return target


def copy_out(rootfs: Path, container_path: str, host_path: Path) -> Path:
    return _copy(secure_join(rootfs, container_path), host_path)


def copy_in(host_path: Path, rootfs: Path, container_path: str) -> Path:
    destination = secure_join(rootfs, container_path)
    if not destination.parent.is_dir():
        raise NotFoundError(f"no such directory in the container: {Path(container_path).parent}")
    return _copy(host_path, destination)
