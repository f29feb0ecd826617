"""The five capability sets of process.capabilities, applied in the order the kernel
requires: bounding set first (needs CAP_SETPCAP), then the uid change with KEEPCAPS,
then capset, then ambient (which needs the bits in permitted and inheritable)."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)

from backends.linux_native import syscalls
from backends.linux_native.log import LOG
from backends.linux_native.tables import CAPABILITIES

PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def to_mask(names: list[str], top: int) -> int:
    mask = 0
    for name in names:
        number = CAPABILITIES.get(name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper())
        if number is None:
            LOG.warning(f"unknown capability {name!r} ignored")
        elif number <= top:
            mask |= 1 << number
    return mask


def drop_bounding(caps: dict[str, list[str]]) -> None:
    top = last_cap()
    keep = to_mask(caps["bounding"], top)
    for number in range(top + 1):
        if not keep & (1 << number):
            syscalls.prctl(PR_CAPBSET_DROP, number)


def change_user(uid: int, gid: int, groups: list[int], keep_caps: bool) -> None:
    if keep_caps:
        syscalls.prctl(PR_SET_KEEPCAPS, 1)
    try:
        os.setgroups(groups)
    except PermissionError:
        if groups:
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if keep_caps:
        syscalls.prctl(PR_SET_KEEPCAPS, 0)


def apply_sets(caps: dict[str, list[str]]) -> None:
    top = last_cap()
    syscalls.capset(
        to_mask(caps["effective"], top), to_mask(caps["permitted"], top), to_mask(caps["inheritable"], top)
    )
    ambient = caps["ambient"]
    if ambient:
        syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        mask = to_mask(ambient, top)
        for number in range(top + 1):
            if mask & (1 << number):
                try:
                    syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, number)
                except OSError:
                    LOG.debug(f"ambient capability {number} not in permitted+inheritable, ignored")
