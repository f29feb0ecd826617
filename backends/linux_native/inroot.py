"""Open a path as a container would see it, with a directory (its root) as "/".

Every symlink, absolute or relative, and every ".." stays inside the root, and /proc's
magic links (/proc/self/fd/N, /proc/<pid>/cwd, root, exe, ns/*) are refused with ELOOP:
they jump to an inode anywhere, which is how a container reaches its host. The answer is
a file descriptor, so callers work on what was resolved (mount onto `fd_path(fd)`,
openat/mkdirat relative to it) instead of a string that a racing process can re-point.

openat2(2) with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS does it in the kernel (5.6+).
Where it is missing (ENOSYS, or EPERM from an old seccomp profile) a checked walk does the
same one component at a time: openat(O_PATH | O_NOFOLLOW) on held directory fds, symlinks
read with readlinkat and resolved here (absolute ones from the root), ".." never above
the root, at most 40 symlinks (the kernel's MAXSYMLINKS). A symlink on procfs whose text
is absolute or has a ":" ("/dev/pts/0", "pipe:[12]", "net:[4026…]") is a magic link;
procfs's ordinary symlinks ("self" -> "1234", "mounts" -> "self/mounts") are relative.

Stdlib-only and cheap to import: libc through syscalls.py, os through fastos.py."""

from __future__ import annotations

import _ctypes
import sys

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
from backends.linux_native.syscalls import _libc, _syscall, c_char, c_long

O_PATH: int = os.O_PATH
O_CLOEXEC: int = os.O_CLOEXEC
_O_NOFOLLOW: int = os.O_NOFOLLOW
_O_CREAT: int = os.O_CREAT
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0o20200000)
_WALK = O_PATH | _O_NOFOLLOW | O_CLOEXEC

_NR_OPENAT2 = 437  # the same on x86_64 and aarch64 (the generic table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_PROC_SUPER_MAGIC = 0x9FA0
MAX_SYMLINKS = 40

_ENOENT, _ENOTDIR, _ELOOP, _EAGAIN, _ENOSYS, _EPERM = 2, 20, 40, 11, 38, 1
_S_IFMT, _S_IFDIR, _S_IFLNK = 0o170000, 0o040000, 0o120000

# False: always use the checked walk (tests set it to exercise the fallback; it also
# becomes False once openat2 answers ENOSYS or EPERM).
USE_OPENAT2 = True


def _error(err: int, path: str) -> OSError:
    return OSError(err, os.strerror(err), path)


_statfs_buffer: type | None = None


def _on_procfs(fd: int) -> bool:
    """fstatfs(FD).f_type is procfs's. The buffer type is made on first use (the walk is
    the rare path): room for struct statfs (120 bytes on x86_64 and aarch64), whose
    first field, a long, is f_type."""
    global _statfs_buffer
    if _statfs_buffer is None:
        _statfs_buffer = type("StatfsBuffer", (_ctypes.Array,), {"_type_": c_char, "_length_": 256})
    buf = _statfs_buffer()
    if _libc.fstatfs(fd, buf) < 0:
        return False
    return int.from_bytes(buf.raw[:8], sys.byteorder) == _PROC_SUPER_MAGIC


def _openat2(dirfd: int, path: str, flags: int, mode: int) -> int:
    """openat2 in the root DIRFD; -1 when the kernel (or a seccomp filter) lacks it."""
    resolve = _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS
    if not flags & _O_CREAT and (flags & _O_TMPFILE) != _O_TMPFILE:
        mode = 0
    order = sys.byteorder
    how = flags.to_bytes(8, order) + mode.to_bytes(8, order) + resolve.to_bytes(8, order)
    raw = path.encode(errors="surrogateescape")
    for _ in range(64):  # EAGAIN: a concurrent rename made the ".." check unsure; retry
        fd = _syscall(_NR_OPENAT2, c_long(dirfd), raw, how, c_long(len(how)))
        if fd >= 0:
            return fd
        err = _ctypes.get_errno()
        if err in (_ENOSYS, _EPERM):
            return -1
        if err != _EAGAIN:
            raise _error(err, path)
    raise _error(_EAGAIN, path)


class _Walk:
    """The checked walk: a stack of held directory fds from the root down."""

    def __init__(self, rootfd: int, path: str, mkdirs: bool, mode: int) -> None:
        self.path = path
        self.stack = [rootfd]  # stack[0] belongs to the caller
        self.pending = [c for c in reversed(path.split("/")) if c not in ("", ".")]
        self.links = 0
        self.mkdirs = mkdirs
        self.mode = mode

    def close(self) -> None:
        for fd in self.stack[1:]:
            os.close(fd)
        del self.stack[1:]

    def _follow(self, link_fd: int) -> None:
        """Queue the text of the symlink LINK_FD in place of it."""
        self.links += 1
        if self.links > MAX_SYMLINKS:
            raise _error(_ELOOP, self.path)
        target = os.readlink("", dir_fd=link_fd)
        if _on_procfs(link_fd) and (target.startswith("/") or ":" in target):
            raise OSError(_ELOOP, "refusing a /proc magic link", self.path)
        if not target:
            raise _error(_ENOENT, self.path)
        if target.startswith("/"):
            self.close()
        self.pending.extend(c for c in reversed(target.split("/")) if c not in ("", "."))

    def _mkdir(self, name: str) -> None:
        try:
            os.mkdir(name, self.mode, dir_fd=self.stack[-1])
        except FileExistsError:
            pass  # made meanwhile: opened and checked again like any entry

    def run(self, flags: int, file_mode: int, follow_last: bool) -> int:
        while self.pending:
            name = self.pending.pop()
            if name == "..":
                if len(self.stack) > 1:
                    os.close(self.stack.pop())
                continue
            if not self.pending:
                fd = self._last(name, flags, file_mode, follow_last)
                if fd >= 0:
                    return fd
                continue
            try:
                fd = os.open(name, _WALK, dir_fd=self.stack[-1])
            except FileNotFoundError:
                if not self.mkdirs:
                    raise _error(_ENOENT, self.path) from None
                self._mkdir(name)
                self.pending.append(name)
                continue
            kind = os.fstat(fd).st_mode & _S_IFMT
            if kind == _S_IFDIR:
                self.stack.append(fd)
                continue
            try:
                if kind != _S_IFLNK:
                    raise _error(_ENOTDIR, self.path)
                self._follow(fd)
            finally:
                os.close(fd)
        # the path ended on the root, "." or "..": open the directory we are in
        return os.open(".", flags, dir_fd=self.stack[-1])

    def _last(self, name: str, flags: int, file_mode: int, follow_last: bool) -> int:
        """The final open of NAME, or -1 after queueing a symlink's target (or a
        directory just made)."""
        parent = self.stack[-1]
        try:
            probe = os.open(name, _WALK, dir_fd=parent)
        except FileNotFoundError:
            if not flags & _O_CREAT:
                if not self.mkdirs:
                    raise _error(_ENOENT, self.path) from None
                self._mkdir(name)
                self.pending.append(name)
                return -1
        else:
            try:
                if follow_last and os.fstat(probe).st_mode & _S_IFMT == _S_IFLNK:
                    self._follow(probe)
                    return -1
            finally:
                os.close(probe)
        # O_NOFOLLOW: if NAME became a symlink meanwhile, fail (ELOOP) or get the link
        fd = os.open(name, flags | _O_NOFOLLOW, file_mode, dir_fd=parent)
        if follow_last and flags & O_PATH and os.fstat(fd).st_mode & _S_IFMT == _S_IFLNK:
            try:
                self._follow(fd)
            finally:
                os.close(fd)
            return -1
        return fd


def open_in_root(
    root: str | int,
    path: str,
    flags: int = O_PATH | O_CLOEXEC,
    *,
    mkdirs: bool = False,
    mode: int = 0o755,
    follow_last: bool = True,
    file_mode: int = 0o644,
) -> int:
    """An fd for PATH as seen with ROOT (a path or a directory fd) as "/".

    FLAGS are open(2)'s (O_CLOEXEC is always added). MKDIRS creates missing directories
    with MODE, one mkdirat at a time on the held parent (the last component too, unless
    FLAGS has O_CREAT, which creates a file with FILE_MODE). FOLLOW_LAST=False opens a
    final symlink itself (with O_PATH) or fails with ELOOP, like O_NOFOLLOW.
    Raises OSError (ENOENT, ENOTDIR, ELOOP for a magic link or too many symlinks)."""
    global USE_OPENAT2
    flags |= O_CLOEXEC
    if flags & _O_NOFOLLOW:
        follow_last = False
    if path.endswith("/"):
        follow_last = True
    if not follow_last:
        flags |= _O_NOFOLLOW
    rootfd = root if isinstance(root, int) else os.open(root, O_PATH | os.O_DIRECTORY | O_CLOEXEC)
    try:
        if USE_OPENAT2:
            try:
                fd = _openat2(rootfd, path or ".", flags, file_mode)
            except FileNotFoundError:
                if not mkdirs:
                    raise
                fd = -2
            if fd >= 0:
                return fd
            if fd == -1:
                USE_OPENAT2 = False
        walk = _Walk(rootfd, path, mkdirs, mode)
        try:
            return walk.run(flags & ~_O_NOFOLLOW if follow_last else flags, file_mode, follow_last)
        finally:
            walk.close()
    finally:
        if not isinstance(root, int):
            os.close(rootfd)


def mkdirs_in_root(root: str | int, path: str, mode: int = 0o755) -> int:
    """An O_PATH fd for directory PATH under ROOT, made (with MODE) where missing."""
    return open_in_root(root, path, O_PATH | os.O_DIRECTORY, mkdirs=True, mode=mode)


def fd_path(fd: int) -> str:
    """A path naming FD's inode for calls that take only paths (mount(2)): the kernel
    follows /proc/self/fd/N to the inode held, not to a name a racer could re-point."""
    return f"/proc/self/fd/{fd}"


def real_path(fd: int) -> str:
    """Where FD is, as the kernel names it (for messages and for checks, not to open)."""
    return os.readlink(fd_path(fd))
