"""What `hostrt info` says about rootless mode: the id maps, storage, cgroups and network an
ordinary user's containers get here (a few /proc and /sys reads, no probe mounts)."""

from __future__ import annotations

import os
import shutil


def _kernel_overlay() -> bool:
    """Linux >= 5.11 mounts overlayfs inside a user namespace."""
    parts = os.uname().release.split(".")
    try:
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (5, 11)
    except (ValueError, IndexError):
        return False


def _storage() -> str:
    from hostrt.engine.snapshot import fuse_overlay_usable

    kernel = "overlayfs in the user namespace (userxattr)" if _kernel_overlay() else "no kernel overlayfs (Linux < 5.11)"
    if fuse_overlay_usable():
        fuse = "fuse-overlayfs fallback available"
    elif shutil.which("fuse-overlayfs"):
        fuse = "fuse-overlayfs installed but /dev/fuse is not open to this user"
    else:
        fuse = "no fuse-overlayfs (apt install fuse-overlayfs)"
    return f"{kernel}; {fuse}; copy as last resort"


def _id_maps(uid: int, gid: int) -> str:
    from hostrt.rootless import idmaps

    maps = idmaps.for_user(uid, gid)
    if maps.single:
        why = ("no newuidmap/newgidmap (apt install uidmap)" if not idmaps.helpers_present()
               else "no /etc/subuid and /etc/subgid ranges")
        return f"single id (0 -> {uid}): {why}"
    ranges = ", ".join(f"{r.start}+{r.count}" for r in maps.uid_ranges)
    return f"0 -> {uid}, 1..{maps.size('uid') - 1} -> subuid {ranges}"


def _cgroups() -> str:
    from hostrt.rootless.cgroups import delegated_parent

    parent = delegated_parent()
    if parent:
        return f"delegated cgroup v2 tree {parent}: limits apply"
    return "no delegated cgroup v2 tree: containers run without a cgroup; --memory, --cpus, --pids-limit are refused"


def _network() -> str:
    if shutil.which("slirp4netns"):
        return "default network through slirp4netns, published ports through hostrt's proxy; none and host work"
    return "slirp4netns not installed (apt-get install slirp4netns): --network none and host only"


def gather() -> dict[str, str] | None:
    """None for root; else the rootless facts, labelled."""
    from hostrt import rootless

    if not (rootless.active() or rootless.wanted()):
        return None
    uid = rootless.user_uid()
    import pwd

    try:
        gid = pwd.getpwuid(uid).pw_gid
    except KeyError:
        gid = uid
    return {"ID maps": _id_maps(uid, gid), "Storage": _storage(), "Cgroups": _cgroups(), "Network": _network()}
