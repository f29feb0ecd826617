"""linux.seccomp -> a libseccomp filter through ctypes. Built in the runtime process
(before the fork, while libseccomp.so can still be found) and loaded by the container
process as its last step before execve."""

from __future__ import annotations

import ctypes

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

# linux.seccomp.flags -> libseccomp filter attribute set to 1
FLAG_ATTRS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 4,
    "SECCOMP_FILTER_FLAG_LOG": 6,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 7,
}
_ATTR_CTL_NNP = 3
_EPERM = 1


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


_library: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _library
    if _library is not None:
        return _library
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        raise RuntimeFailure("linux.seccomp needs libseccomp (Debian: apt-get install libseccomp2)") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    _library = lib
    return lib


def preload() -> None:
    """Load libseccomp now, in a long-lived process: its forks (hostrt-runtime in-process) then
    build filters without loading it each time. Its probe of the kernel's seccomp API (a thread
    that enters strict mode) stays in the forks, as in a runtime process of its own."""
    try:
        _lib()
    except RuntimeFailure:
        pass  # reported when a container asks for seccomp


def _action(name: str, value: int | None, default_errno: int) -> int:
    if name not in ACTIONS:
        raise ConfigError(f"seccomp action {name!r} is not supported")
    code = ACTIONS[name]
    if name in WITH_VALUE:
        code |= (value if value is not None else (default_errno if name == "SCMP_ACT_ERRNO" else 0)) & 0xFFFF
    return code


class Filter:
    def __init__(self, lib: ctypes.CDLL, ctx: int) -> None:
        self.lib = lib
        self.ctx = ctx

    def load(self) -> None:
        ret = self.lib.seccomp_load(self.ctx)
        if ret < 0:
            raise OSError(-ret, f"seccomp_load: error {-ret}")


def build(raw: dict) -> Filter:
    if raw.get("listenerPath"):
        raise ConfigError("seccomp user notification (listenerPath) is not supported")
    lib = _lib()
    default_errno = raw.get("defaultErrnoRet") or _EPERM
    default = _action(raw.get("defaultAction", "SCMP_ACT_ALLOW"), raw.get("defaultErrnoRet"), _EPERM)
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise RuntimeFailure("seccomp_init failed")
    lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0)  # no_new_privs is process.noNewPrivileges' call
    for flag in raw.get("flags") or ():
        if flag in FLAG_ATTRS:
            lib.seccomp_attr_set(ctx, FLAG_ATTRS[flag], 1)
    for arch in raw.get("architectures") or ():
        token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
        if not token:
            raise ConfigError(f"unknown seccomp architecture {arch}")
        ret = lib.seccomp_arch_add(ctx, token)
        if ret < 0 and ret != -17:  # EEXIST: the native one is always there
            raise ConfigError(f"seccomp architecture {arch}: error {-ret}")
    for rule in raw.get("syscalls") or ():
        action = _action(rule["action"], rule.get("errnoRet"), default_errno)
        if action == default:
            continue
        for cmps in _arg_groups(rule.get("args") or ()):
            for name in rule.get("names") or ():
                number = lib.seccomp_syscall_resolve_name(name.encode())
                if number == -1:
                    LOG.debug(f"seccomp: unknown syscall {name} ignored")
                    continue
                array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
                ret = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
                if ret < 0:
                    raise ConfigError(f"seccomp rule for {name}: error {-ret}")
    return Filter(lib, ctx)


def _arg_groups(args) -> list[list[_ArgCmp]]:
    """All comparisons in one rule (AND), unless two name the same argument, which
    libseccomp cannot AND: then one rule per comparison (OR), as runc does."""
    cmps = []
    for a in args:
        op = OPERATORS.get(a["op"])
        if op is None:
            raise ConfigError(f"seccomp operator {a['op']!r} is not supported")
        cmps.append(_ArgCmp(int(a["index"]), op, int(a.get("value", 0)), int(a.get("valueTwo", 0))))
    indexes = [c.arg for c in cmps]
    if len(set(indexes)) != len(indexes):
        return [[c] for c in cmps]
    return [cmps]
