"""Copy files and trees between held directory descriptors, never through a symlink.

A container's files are hostile and may change while they are copied (CVE-2018-15664:
a directory swapped for a link to "/" between a check and a use). So every step here is
relative to a directory fd already held, with O_NOFOLLOW, and a file is opened before it
is looked at (fstat of the open fd, not stat of a name): a swap can make a copy fail or
copy a link as a link, never read or write outside the trees the fds hold.

Used by `hostrt cp` (engine/copy.py) and by the rootfs copy fallback (engine/snapshot.py),
which also applies layer whiteouts the way overlayfs would.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass

from hostrt.errors import HostrtError

OPAQUE_XATTR = "trusted.overlay.opaque"
USER_OPAQUE_XATTR = "user.overlay.opaque"  # rootless layers (hostrt/images/unpack.py)
OPAQUE_FILE = ".wh..wh..opq"
WHITEOUT_PREFIX = ".wh."
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RETRIES = 8  # a racing process may keep re-creating a name; give up after that many tries


class CopyError(HostrtError):
    """A copy that met something it must not overwrite or follow."""


@dataclass(frozen=True)
class Options:
    owner: bool = False  # keep uid/gid (and xattrs): a layer copy, not `cp`
    layer: bool = False  # the source is an image layer: whiteouts and opaque directories apply
    replace_dirs: bool = False  # a non-directory may replace a directory (overlayfs does)


def _lstat(dirfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def remove(dirfd: int, name: str) -> None:
    """Remove NAME in DIRFD, a tree too, without following links (shutil's fd-based walk)."""
    st = _lstat(dirfd, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dirfd)
    else:
        try:
            os.unlink(name, dir_fd=dirfd)
        except FileNotFoundError:
            pass


def _clear(dirfd: int) -> None:
    for name in os.listdir(dirfd):
        remove(dirfd, name)


def _make_room(dirfd: int, name: str, for_dir: bool, opts: Options) -> os.stat_result | None:
    """Unlink what is at NAME unless it is a directory a directory merges into."""
    st = _lstat(dirfd, name)
    if st is None:
        return None
    if stat.S_ISDIR(st.st_mode):
        if for_dir:
            return st
        if not opts.replace_dirs:
            raise CopyError(f"cannot overwrite directory {name!r} with a non-directory")
    remove(dirfd, name)
    return None


def open_dir(dirfd: int, name: str, mode: int, opts: Options) -> int:
    """A held fd of directory NAME in DIRFD, made (with MODE) where missing; a non-directory
    in its place is replaced, and a symlink is never followed."""
    for _ in range(_RETRIES):
        if _make_room(dirfd, name, True, opts) is None:
            try:
                os.mkdir(name, mode, dir_fd=dirfd)
            except FileExistsError:
                continue
        try:
            return os.open(name, _DIR, dir_fd=dirfd)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
    raise CopyError(f"{name!r} keeps changing while it is copied")


def _copy_xattrs(src_fd: int, dst_fd: int) -> None:
    try:
        names = os.listxattr(src_fd)
    except OSError:
        return
    for key in names:
        if key in (OPAQUE_XATTR, USER_OPAQUE_XATTR):
            continue
        try:
            os.setxattr(dst_fd, key, os.getxattr(src_fd, key))
        except OSError:
            pass


def _copy_file(src_fd: int, st: os.stat_result, dirfd: int, name: str, opts: Options) -> None:
    for _ in range(_RETRIES):
        _make_room(dirfd, name, False, opts)
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
            break
        except FileExistsError:
            continue
    else:
        raise CopyError(f"{name!r} keeps changing while it is copied")
    try:
        remaining = st.st_size
        offset = 0
        while True:
            try:
                sent = os.copy_file_range(src_fd, out, max(remaining, 1 << 20), offset, offset)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                sent = os.sendfile(out, src_fd, offset, 1 << 20)
            if sent == 0:
                break
            offset += sent
            remaining -= sent
        if opts.owner:
            os.fchown(out, st.st_uid, st.st_gid)
            _copy_xattrs(src_fd, out)
        os.fchmod(out, stat.S_IMODE(st.st_mode))
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(out)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(fd: int) -> bool:
    if _lstat(fd, OPAQUE_FILE) is not None:
        return True
    for name in (OPAQUE_XATTR, USER_OPAQUE_XATTR):
        try:
            if os.getxattr(fd, name) == b"y":
                return True
        except OSError:
            pass
    return False


def merge_dir(src_fd: int, dst_fd: int, opts: Options) -> None:
    """Copy the entries of directory SRC_FD into directory DST_FD."""
    for name in sorted(os.listdir(src_fd)):
        if opts.layer:
            if name == OPAQUE_FILE:
                continue
            if name.startswith(WHITEOUT_PREFIX):  # an unprivileged unpack's marker file
                remove(dst_fd, name[len(WHITEOUT_PREFIX):])
                continue
        copy_entry(src_fd, name, dst_fd, name, opts)


def copy_entry(src_dir: int, name: str, dst_dir: int, dst_name: str, opts: Options) -> None:
    """Copy entry NAME of SRC_DIR to DST_NAME in DST_DIR (a tree, a file, a link, a node)."""
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    except FileNotFoundError:
        return  # gone meanwhile: as if the copy had started a moment later
    try:
        copy_fd(fd, dst_dir, dst_name, opts)
    finally:
        os.close(fd)


def copy_fd(path_fd: int, dst_dir: int, dst_name: str, opts: Options) -> None:
    """Copy what the O_PATH descriptor PATH_FD holds to DST_NAME in DST_DIR. The inode is
    pinned by the fd: what fstat says is what gets read."""
    st = os.fstat(path_fd)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        src = os.open(".", _DIR, dir_fd=path_fd)
        try:
            existed = _lstat(dst_dir, dst_name) is not None
            dst = open_dir(dst_dir, dst_name, 0o700, opts)
            try:
                if opts.layer and existed and _is_opaque(src):
                    _clear(dst)
                merge_dir(src, dst, opts)
                if opts.owner:
                    os.fchown(dst, st.st_uid, st.st_gid)
                    _copy_xattrs(src, dst)
                os.fchmod(dst, stat.S_IMODE(mode))
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)
    elif stat.S_ISREG(mode):
        src = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC)  # the same inode, now readable
        try:
            _copy_file(src, st, dst_dir, dst_name, opts)
        finally:
            os.close(src)
    elif stat.S_ISLNK(mode):
        target = os.readlink("", dir_fd=path_fd)
        _make_room(dst_dir, dst_name, False, opts)
        os.symlink(target, dst_name, dir_fd=dst_dir)
        if opts.owner:
            os.chown(dst_name, st.st_uid, st.st_gid, dir_fd=dst_dir, follow_symlinks=False)
        os.utime(dst_name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_dir, follow_symlinks=False)
    elif opts.layer and _is_whiteout(st):
        remove(dst_dir, dst_name)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        _make_room(dst_dir, dst_name, False, opts)
        os.mknod(dst_name, mode & ~0o7777 | 0o600, st.st_rdev, dir_fd=dst_dir)
        node = os.open(dst_name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst_dir)
        try:
            if opts.owner:
                os.chown(f"/proc/self/fd/{node}", st.st_uid, st.st_gid)
            os.chmod(f"/proc/self/fd/{node}", stat.S_IMODE(mode))
        finally:
            os.close(node)
    # sockets are not copied (tar and docker cp skip them too)
