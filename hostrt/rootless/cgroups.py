"""Where a rootless container's cgroup may go, and the limits that cannot go anywhere.

A user may create cgroups only in a cgroup v2 subtree delegated to it (systemd's user@UID
service with Delegate=yes: the directory and its cgroup.procs/subtree_control files are
the user's). hostrt puts containers beside the cgroup it runs in, under the nearest
ancestor it may write to, as `hostrt-<id>`. A host without one (cgroup v1, or v2 without
delegation) runs rootless containers without a cgroup; a limit asked for there is refused
with one line naming it, rather than silently ignored (Podman warns and ignores; a memory
limit that is not applied is a limit the user believes in).
"""

from __future__ import annotations

import os

CGROUP_ROOT = "/sys/fs/cgroup"
LIMIT_FLAGS = (("memory", "--memory"), ("cpu", "--cpus"), ("pids", "--pids-limit"))


def _own_v2_path() -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def delegated_parent() -> str | None:
    """The cgroup (path below /sys/fs/cgroup) under which this user may make containers'
    cgroups with the memory, cpu and pids controllers, or None."""
    if not os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        return None  # not a unified (v2) host: v1 hierarchies are never delegated
    own = _own_v2_path()
    if own is None:
        return None
    parent = os.path.dirname(own.rstrip("/")) or "/"
    while parent not in ("", "/"):
        directory = f"{CGROUP_ROOT}{parent}"
        if os.access(directory, os.W_OK) and os.access(f"{directory}/cgroup.subtree_control", os.W_OK):
            try:
                with open(f"{directory}/cgroup.controllers") as f:
                    available = set(f.read().split())
            except OSError:
                available = set()
            if {"memory", "pids"} <= available:
                return parent
        parent = os.path.dirname(parent)
    return None


def cgroups_path(container_id: str) -> str:
    """linux.cgroupsPath for a rootless container: in the delegated tree, or "" (none)."""
    parent = delegated_parent()
    return f"{parent}/hostrt-{container_id}" if parent else ""


def refuse_unappliable(resources: dict) -> None:
    """Raise when a limit was asked for and this user has nowhere to apply it."""
    asked = [flag for key, flag in LIMIT_FLAGS if resources.get(key)]
    if not asked or delegated_parent() is not None:
        return
    from hostrt.errors import HostrtError

    raise HostrtError(f"rootless: cannot apply {', '.join(asked)}: this user has no delegated cgroup v2 tree "
                      "(a cgroup v1 host, or v2 without delegation); run without the limit, or as root")
