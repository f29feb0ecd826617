"""`hostrt cp`: copy between the host and a container's root filesystem (native containers).

The container path is resolved once, inside the root, to a held descriptor
(backends/linux_native/inroot.py: openat2 RESOLVE_IN_ROOT, or its checked walk); all the
copying then happens relative to held descriptors (engine/fdtree.py). A running
container that swaps a directory for a link to "/" meanwhile (CVE-2018-15664) can make
the copy fail, never make it read or write the host.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from pathlib import Path

from backends.linux_native import inroot
from hostrt.engine import fdtree
from hostrt.errors import HostrtError, NotFoundError, UsageError

_CP = fdtree.Options()


def _error(exc: OSError, what: str) -> HostrtError:
    if exc.errno == errno.ENOENT:
        return NotFoundError(f"no such file or directory: {what}")
    if exc.errno == errno.ELOOP:
        return UsageError(f"{what}: too many levels of symbolic links, or a /proc magic link")
    return HostrtError(f"{what}: {exc.strerror or exc}")


def _in_root(rootfd: int, path: str, flags: int = inroot.O_PATH) -> int:
    try:
        return inroot.open_in_root(rootfd, path, flags)
    except OSError as exc:
        raise _error(exc, f"{path} in the container") from None


def _source_name(path: str) -> str:
    name = posixpath.basename(posixpath.normpath("/" + path))
    return name or "rootfs"


def _host_target(host_path: Path, name: str, source_is_dir: bool) -> tuple[int, str]:
    """The host directory fd and name to copy to: into HOST_PATH if it is a directory
    (as cp does), else HOST_PATH itself in its existing parent."""
    if host_path.is_dir():
        return os.open(host_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), name
    if source_is_dir and (host_path.exists() or host_path.is_symlink()):
        raise UsageError(f"cannot overwrite non-directory {host_path} with a directory")
    try:
        return os.open(host_path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), host_path.name
    except FileNotFoundError:
        raise NotFoundError(f"no such directory: {host_path.parent}") from None


def copy_out(rootfs: Path, container_path: str, host_path: Path) -> Path:
    """Copy CONTAINER_PATH (resolved in ROOTFS) to HOST_PATH; returns the path written."""
    host_path = Path(host_path)
    into = host_path.is_dir()
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        source = _in_root(rootfd, container_path)
        try:
            is_dir = stat.S_ISDIR(os.fstat(source).st_mode)
            dst_dir, name = _host_target(host_path, _source_name(container_path), is_dir)
            try:
                fdtree.copy_fd(source, dst_dir, name, _CP)
            except OSError as exc:
                raise _error(exc, f"copying {container_path}") from None
            finally:
                os.close(dst_dir)
        finally:
            os.close(source)
    finally:
        os.close(rootfd)
    return host_path / name if into else host_path


def _container_target(rootfd: int, container_path: str, name: str, source_is_dir: bool) -> tuple[int, str]:
    """The container directory fd and name to copy to, both resolved inside the root:
    into CONTAINER_PATH if it is a directory, else onto the entry it names."""
    try:
        existing = inroot.open_in_root(rootfd, container_path)
    except FileNotFoundError:
        existing = -1
    except OSError as exc:
        raise _error(exc, f"{container_path} in the container") from None
    if existing >= 0:
        try:
            if stat.S_ISDIR(os.fstat(existing).st_mode):
                return os.dup(existing), name
            if source_is_dir:
                raise UsageError(f"cannot overwrite non-directory {container_path} with a directory")
            # a file, maybe through links: replace it where it really is (inside the root)
            where = posixpath.relpath(inroot.real_path(existing), inroot.real_path(rootfd))
        finally:
            os.close(existing)
    elif container_path.endswith(("/", "/.")):
        raise NotFoundError(f"no such directory in the container: {container_path}")
    else:
        where = posixpath.normpath("/" + container_path)
    parent, leaf = posixpath.split(where)
    if leaf in ("", ".", ".."):
        raise UsageError(f"{container_path}: not a file name in the container")
    try:
        return inroot.open_in_root(rootfd, parent or "/", inroot.O_PATH | os.O_DIRECTORY), leaf
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFoundError(f"no such directory in the container: {posixpath.dirname(container_path)}") from None
        raise _error(exc, f"{container_path} in the container") from None


def copy_in(host_path: Path, rootfs: Path, container_path: str) -> Path:
    """Copy HOST_PATH to CONTAINER_PATH (resolved in ROOTFS)."""
    host_path = Path(host_path)
    try:
        source = os.open(host_path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"no such file or directory: {host_path}") from None
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        is_dir = stat.S_ISDIR(os.fstat(source).st_mode)
        dst_dir, name = _container_target(rootfd, container_path, host_path.name, is_dir)
        try:
            # O_PATH dirfds serve for *at calls but not for listing: reopen the directory
            held = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dst_dir)
        finally:
            os.close(dst_dir)
        try:
            fdtree.copy_fd(source, held, name, _CP)
        except OSError as exc:
            raise _error(exc, f"copying to {container_path}") from None
        finally:
            os.close(held)
    finally:
        os.close(rootfd)
        os.close(source)
    return Path(container_path)
