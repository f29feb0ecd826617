"""linux.seccomp -> a BPF program, compiled by libseccomp through ctypes.

Only compiling: `seccomp.py` keeps what this returns and loads it with seccomp(2). What the
runtime-spec leaves to the runtime, done as runc does it:
- a syscall name this libseccomp does not know (one newer than the library) is skipped, so the
  profile's default action answers it;
- a rule whose action is the default action adds nothing and is skipped;
- comparisons on different arguments are one rule (all must hold); libseccomp cannot AND two
  comparisons of the same argument, so a rule with those becomes one rule per comparison;
- names of other architectures' syscalls (chown32 on x86_64) resolve to libseccomp's
  pseudo-numbers, which it translates for each architecture of the filter that has them.
"""

from __future__ import annotations

import ctypes

from backends.linux_native import fastos as os
from backends.linux_native.errors import ConfigError, RuntimeFailure
from backends.linux_native.log import LOG

ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
WITH_VALUE = {"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"}

OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}

_EPERM = 1
_EEXIST = 17
_ARGUMENTS = 6  # a syscall has at most six
_NR_SCMP_ERROR = -1  # seccomp_syscall_resolve_name's answer for a name it does not know


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_library: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """libseccomp, loaded once per process."""
    global _library
    if _library is not None:
        return _library
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        raise RuntimeFailure("linux.seccomp needs libseccomp (Debian: apt-get install libseccomp2)") from None
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    _library = lib
    return lib


def version() -> str:
    """libseccomp's version: what it compiles (the syscalls it knows) depends on it."""
    found = library().seccomp_version().contents
    return f"{found.major}.{found.minor}.{found.micro}"


def _action(name: str, value: int | None, default_errno: int) -> int:
    if name not in ACTIONS:
        raise ConfigError(f"seccomp action {name!r} is not supported")
    code = ACTIONS[name]
    if name in WITH_VALUE:
        code |= (value if value is not None else (default_errno if name == "SCMP_ACT_ERRNO" else 0)) & 0xFFFF
    return code


def compile_filter(raw: dict) -> bytes:
    """The BPF program (sock_filter instructions) for a linux.seccomp section."""
    lib = library()
    default_errno = raw.get("defaultErrnoRet") or _EPERM
    default = _action(raw.get("defaultAction", "SCMP_ACT_ALLOW"), raw.get("defaultErrnoRet"), _EPERM)
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise RuntimeFailure("seccomp_init failed")
    try:
        for arch in raw.get("architectures") or ():
            token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
            if not token:
                raise ConfigError(f"unknown seccomp architecture {arch}")
            ret = lib.seccomp_arch_add(ctx, token)
            if ret < 0 and ret != -_EEXIST:  # the native one is always there
                raise ConfigError(f"seccomp architecture {arch}: {os.strerror(-ret)}")
        for rule in raw.get("syscalls") or ():
            _add_rule(lib, ctx, rule, default, default_errno)
        return _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)


def _add_rule(lib: ctypes.CDLL, ctx: int, rule: dict, default: int, default_errno: int) -> None:
    action = _action(rule["action"], rule.get("errnoRet"), default_errno)
    if action == default:
        return
    groups = _arg_groups(rule.get("args") or ())
    for name in rule.get("names") or ():
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number == _NR_SCMP_ERROR:
            LOG.debug(f"seccomp: syscall {name} is unknown to libseccomp {version()}; the default action answers it")
            continue
        for cmps in groups:
            array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
            ret = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
            if ret < 0:
                raise ConfigError(f"seccomp rule for {name}: {os.strerror(-ret)}")


def _arg_groups(args) -> list[list[_ArgCmp]]:
    """All comparisons in one rule (AND), unless two name the same argument, which
    libseccomp cannot AND: then one rule per comparison (OR), as runc does."""
    cmps = []
    for a in args:
        op = OPERATORS.get(a["op"])
        if op is None:
            raise ConfigError(f"seccomp operator {a['op']!r} is not supported")
        index = int(a["index"])
        if not 0 <= index < _ARGUMENTS:
            raise ConfigError(f"seccomp argument index {index} is out of range (0-5)")
        cmps.append(_ArgCmp(index, op, int(a.get("value", 0)), int(a.get("valueTwo", 0))))
    indexes = [c.arg for c in cmps]
    if len(set(indexes)) != len(indexes):
        return [[c] for c in cmps]
    return [cmps]


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        ret = lib.seccomp_export_bpf(ctx, fd)
        if ret < 0:
            raise RuntimeFailure(f"seccomp_export_bpf: {os.strerror(-ret)}")
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)
