"""A process's context: its namespaces, root directory and cgroups, as seen from /proc.

A `hostrt` command handed to a resident process (the engine server, the container monitor)
runs in that process's context, not its caller's: another mount namespace sees other files,
another network namespace publishes ports elsewhere, another cgroup escapes the caller's
limits. Both compare their caller's context (its pid from SO_PEERCRED) with their own and
serve only an identical one. Reading it costs a dozen small /proc reads (tens of
microseconds). Standard library only: the monitor and the server's accept path use it.
"""

from __future__ import annotations

import os
import socket
import struct
import zlib

_NAMESPACES: tuple[str, ...] | None = None


def _namespaces() -> tuple[str, ...]:
    """Every namespace kind this kernel shows (cgroup, ipc, mnt, net, pid, time, user, uts and
    the *_for_children ones a process unshared without forking)."""
    global _NAMESPACES
    if _NAMESPACES is None:
        try:
            _NAMESPACES = tuple(sorted(os.listdir("/proc/self/ns")))
        except OSError:
            _NAMESPACES = ()
    return _NAMESPACES


def of(pid: int | str) -> tuple[str, ...] | None:
    """The context of process `pid` ("self" for this one); None when it cannot be read (gone,
    invisible from this PID namespace, not ours to inspect): then nobody can say it matches."""
    if pid in (0, "0"):
        return None  # a peer in a PID namespace this process cannot see
    base = f"/proc/{pid}"
    try:
        links = [os.readlink(f"{base}/ns/{name}") for name in _namespaces()]
        root = os.stat(f"{base}/root")
        with open(f"{base}/cgroup", "rb") as cgroups:
            cgroup = cgroups.read().decode(errors="replace")
    except OSError:
        return None
    if not links:
        return None
    return (*links, f"root:{root.st_dev}:{root.st_ino}", cgroup)


def peer_pid(conn: socket.socket) -> int:
    """The pid of the process that connected `conn`, in this process's PID namespace (0 when
    it has none here)."""
    pid, _uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid


def same_as_peer(conn: socket.socket) -> bool:
    """Whether the peer of `conn` runs in exactly this process's context."""
    mine = of("self")
    return mine is not None and of(peer_pid(conn)) == mine


def key(context: tuple[str, ...] | None = None) -> str:
    """A short name for a context (this process's by default), to keep one resident process
    per context apart from the others'."""
    context = context if context is not None else of("self")
    return f"{zlib.crc32(repr(context).encode()):08x}"
