"""Joining namespaces by path, unsharing new ones, and the user namespace id maps."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)

from backends.linux_native import syscalls
from backends.linux_native.tables import NAMESPACES

CLONE_NEWUSER = NAMESPACES["user"][0]
CLONE_NEWNET = NAMESPACES["network"][0]
CLONE_NEWPID = NAMESPACES["pid"][0]
CLONE_NEWCGROUP = NAMESPACES["cgroup"][0]


def join(paths: dict[str, str]) -> None:
    """setns into every namespace given by path, user first (it owns the others).
    All files are opened before the first setns: once in a new mount namespace the
    host paths may no longer resolve."""
    opened: list[tuple[int, int, str]] = []
    for kind, (flag, _) in NAMESPACES.items():
        path = paths.get(kind)
        if path:
            opened.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), flag, path))
    for fd, flag, path in opened:
        try:
            syscalls.setns(fd, flag)
        except OSError as exc:
            raise OSError(exc.errno, f"joining namespace {path}: {exc.strerror}") from None
        finally:
            os.close(fd)


def new_flags(namespaces: dict[str, str], without_user: bool = True) -> int:
    """The clone flags of the namespaces the spec asks to create (no path)."""
    flags = 0
    for kind, path in namespaces.items():
        if not path and not (without_user and kind == "user"):
            flags |= NAMESPACES[kind][0]
    return flags


def write_id_maps(pid: int, uid_mappings: list, gid_mappings: list) -> None:
    """Write /proc/PID/{uid,gid}_map from the parent (root in the outer namespace can map
    any range; the child cannot)."""
    for name, mappings in (("uid_map", uid_mappings), ("gid_map", gid_mappings)):
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)
        if text:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)


_ROOTLESS: list[bool] = []


def rootless() -> bool:
    """True when this process runs in a user namespace other than the host's (rootless mode:
    hostrt's user namespace, whose root is an ordinary user). Read once per process."""
    if not _ROOTLESS:
        try:
            with open("/proc/self/uid_map") as f:
                _ROOTLESS.append(f.read().split() != ["0", "0", "4294967295"])
        except OSError:
            _ROOTLESS.append(False)
    return _ROOTLESS[0]


def same_namespace(pid: int, kind: str) -> bool:
    """True if PID shares our namespace of KIND (setns into one's own user namespace
    fails with EINVAL, so exec must skip those)."""
    name = NAMESPACES[kind][1]
    try:
        return os.readlink(f"/proc/{pid}/ns/{name}") == os.readlink(f"/proc/self/ns/{name}")
    except OSError:
        return True
