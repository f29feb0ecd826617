"""Move this process into the cgroups another process is in (its /proc/PID/cgroup text).

A worker of the engine server is forked in the server's cgroups; a caller from another
cgroup (another login session, a `systemd-run --scope` with limits) wants what its command
starts to be counted and limited where it is. Where the caller's namespaces and root are the
server's, the worker joins the caller's cgroups before it runs the command, as Podman's
`--cgroups=split` keeps conmon where it was started. Where it may not (a v2 tree not
delegated to the user, a hierarchy not mounted here), the caller runs the command itself.
Standard library only: it runs between fork and the command.
"""

from __future__ import annotations

import os


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount root, mount point, options) of every cgroup and cgroup2 mount of this namespace."""
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as info:
        for line in info:
            fields, _, tail = line.partition(" - ")
            fstype, _source, options = (tail.split() + ["", "", ""])[:3]
            if fstype in ("cgroup", "cgroup2"):
                parts = fields.split()
                point = parts[4].replace("\\040", " ")
                mounts.append((parts[3], point, set(options.split(",")) | ({"cgroup2"} if fstype == "cgroup2" else set())))
    return mounts


def _directory(controllers: str, path: str, mounts: list[tuple[str, str, set[str]]]) -> str | None:
    """Where hierarchy `controllers` ("" for v2) mounts cgroup `path`, if it does here."""
    wanted = {"cgroup2"} if not controllers else set(controllers.split(","))
    for root, point, options in mounts:
        if wanted <= options and (path == root or path.startswith(root.rstrip("/") + "/")):
            return os.path.join(point, path[len(root.rstrip("/")):].lstrip("/"))
    return None


def join(target: str) -> bool:
    """Enter every cgroup listed in `target` (a /proc/PID/cgroup text); True once this process's
    own list is exactly that, False if any move is not possible."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as own:
            current = own.read()
        if current == target:
            return True
        mine = {tuple(line.split(":", 2)[:2]): line.split(":", 2)[2] for line in current.splitlines() if line}
        mounts = _mounts()
        for line in filter(None, target.splitlines()):
            number, controllers, path = line.split(":", 2)  # a path may hold ":", the others not
            if mine.get((number, controllers)) == path:
                continue
            directory = _directory(controllers, path, mounts)
            if directory is None:
                return False
            fd = os.open(os.path.join(directory, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")  # "0": the writing process itself
            finally:
                os.close(fd)
        with open("/proc/self/cgroup", encoding="utf-8") as own:
            return own.read() == target
    except (OSError, ValueError):
        return False
