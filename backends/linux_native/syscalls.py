"""Thin wrappers for the Linux syscalls the standard library lacks (Python 3.11 has no
os.unshare/os.setns). Each raises OSError with errno, like the os module does.

They call libc through `_ctypes`, the C half of ctypes, with the three C types they
need: `import ctypes` builds some forty types and imports struct on every `create`
(3-4 ms of CPU here), for nothing these calls use."""

from __future__ import annotations

import _ctypes
from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import sys


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


class c_char(_ctypes._SimpleCData):
    _type_ = "c"


class _Libc:
    """What a foreign function needs of its library: the dlopen handle (the process's own
    symbols, glibc's among them)."""

    _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)


class _IntFunction(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _LongFunction(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_long


class _LibcFunctions:
    """libc functions resolved on first use, like ctypes.CDLL attributes."""

    def __getattr__(self, name: str) -> _ctypes.CFuncPtr:
        function = _IntFunction((name, _Libc))
        setattr(self, name, function)
        return function


_libc = _LibcFunctions()
_syscall = _LongFunction(("syscall", _Libc))

# x86_64 and aarch64 numbers of the syscalls glibc 2.36 wraps poorly or not at all.
_NUMBERS = {
    "x86_64": {"pivot_root": 155, "capget": 125, "capset": 126, "close_range": 436, "seccomp": 317, "mount_setattr": 442,
               "bpf": 321},
    "aarch64": {"pivot_root": 41, "capget": 90, "capset": 91, "close_range": 436, "seccomp": 277, "mount_setattr": 442,
                "bpf": 280},
}
# Another machine name (macOS calls arm64 "arm64") has no table: importing this module still
# works there, only a call fails.
_NR = _NUMBERS.get(os.uname().machine, {})


def _check(ret: int, what: str, path: str | None = None) -> int:
    if ret < 0:
        err = _ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return ret


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source or fstype} on {target}",
        target,
    )


def mount_setattr(fd: int, attr_set: int, attr_clr: int, recursive: bool) -> bool:
    """mount_setattr(2) on the mount FD is the root of (and, RECURSIVE, every mount below
    it); False where the kernel (< 5.12) or a seccomp filter lacks the call."""
    order = sys.byteorder
    attr = attr_set.to_bytes(8, order) + attr_clr.to_bytes(8, order) + bytes(16)  # struct mount_attr
    flags = 0x1000 | (0x8000 if recursive else 0)  # AT_EMPTY_PATH, AT_RECURSIVE
    if _syscall(_NR["mount_setattr"], c_long(fd), b"", c_long(flags), attr, c_long(len(attr))) >= 0:
        return True
    err = _ctypes.get_errno()
    if err in (38, 1):  # ENOSYS, EPERM
        return False
    raise OSError(err, f"mount_setattr: {os.strerror(err)}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}", target)


def socket_fd(family: int, kind: int) -> int:
    """A bare socket descriptor, for an ioctl or two without importing the socket module (~5 ms)."""
    return _check(_libc.socket(family, kind, 0), "socket")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall(_NR["pivot_root"], new_root.encode(), put_old.encode()), "pivot_root", new_root)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(
        _libc.prctl(option, c_ulong(arg2), c_ulong(arg3), c_ulong(arg4), c_ulong(arg5)),
        f"prctl({option})",
    )


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), "setdomainname")


def close_range_cloexec(first: int) -> None:
    """Mark every fd >= first close-on-exec (CLOSE_RANGE_CLOEXEC), so nothing of the
    runtime leaks into the container (CVE-2024-21626 class)."""
    if _syscall(_NR["close_range"], first, 0xFFFFFFFF, 4) < 0:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd >= first:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass


def add_seals(fd: int, seals: int) -> None:
    """fcntl(F_ADD_SEALS) on a memfd (posix has no fcntl, and the fcntl module is one more import)."""
    _check(_libc.fcntl(fd, 1033, seals), "fcntl(F_ADD_SEALS)")


_CAP_V3 = 0x20080522


def _u32(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, sys.byteorder)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) with version 3 structs built as bytes: the header {u32 version, int pid}
    and two {u32 effective, permitted, inheritable}, low 32 capabilities first."""
    header = _u32(_CAP_V3) + _u32(0)
    data = b"".join(_u32(effective >> s) + _u32(permitted >> s) + _u32(inheritable >> s) for s in (0, 32))
    _check(_syscall(_NR["capset"], header, data), "capset")


_SECCOMP_SET_MODE_FILTER = 1


def seccomp_set_filter(program: bytes, flags: int) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER, FLAGS, &prog) for a BPF program of 8-byte sock_filter
    instructions. struct sock_fprog is {unsigned short len; struct sock_filter *filter} (padded
    to 16 bytes on the LP64 machines the table above knows), built as bytes around a buffer
    that stays alive for the call."""
    count, rest = divmod(len(program), 8)
    if rest or not 0 < count <= 0xFFFF:
        raise OSError(22, f"seccomp: a BPF program of {len(program)} bytes is not whole instructions")
    buffer_type = type("_Program", (_ctypes.Array,), {"_type_": c_char, "_length_": len(program)})
    buffer = buffer_type.from_buffer_copy(program)
    fprog = count.to_bytes(2, sys.byteorder) + bytes(6) + _ctypes.addressof(buffer).to_bytes(8, sys.byteorder)
    _check(_syscall(_NR["seccomp"], _SECCOMP_SET_MODE_FILTER, c_ulong(flags), fprog), "seccomp")


def address(buf: bytearray) -> int:
    """Where BUF's bytes are, for a pointer inside a syscall's argument struct. BUF must
    outlive the call and not be resized before it."""
    return _ctypes.addressof(c_char.from_buffer(buf))


def bpf(cmd: int, attr: bytearray) -> int:
    """bpf(2) with ATTR as the bytes of its union bpf_attr (the kernel writes some answers
    back into it); returns what the command returns (a new fd for the loads)."""
    ret = _syscall(_NR["bpf"], cmd, c_ulong(address(attr)), len(attr))
    if ret < 0:
        err = _ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret
