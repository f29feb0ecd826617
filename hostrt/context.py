"""A process's context: its namespaces, root directory and cgroups, as seen from /proc.

A `hostrt` command handed to a resident process (the engine server, the container monitor)
runs in that process's context, not its caller's: another mount namespace sees other files,
another network namespace publishes ports elsewhere, another cgroup escapes the caller's
limits. Both compare their caller's context (its pid from SO_PEERCRED) with their own: the
monitor serves only an identical one, the server one with its namespaces and root (its
worker joins the caller's cgroups). Reading it costs a dozen small /proc reads (tens of
microseconds). Standard library only: the monitor and the server's accept path use it.
"""

from __future__ import annotations

import os
import socket
import struct
import zlib

_NAMESPACES: tuple[str, ...] | None = None
_PF_EXITING = 0x4  # a flag of /proc/PID/stat


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
    try:
        directory = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:  # relative to the process's directory: the same process throughout, a few us a read
        cgroup = _read(os.open("cgroup", os.O_RDONLY | os.O_CLOEXEC, dir_fd=directory))
        links = [os.readlink(f"ns/{name}", dir_fd=directory) for name in _namespaces()]
        root = os.stat("root", dir_fd=directory)
        # Read last: a process that has begun to exit (PF_EXITING, set before it leaves its
        # cgroups, after which it shows the root ones) or is a zombie has no context to compare.
        stat = _read(os.open("stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=directory)).rsplit(b")", 1)[1].split()
    except OSError:
        return None
    finally:
        os.close(directory)
    if stat[0] in (b"Z", b"X") or int(stat[6]) & _PF_EXITING:
        return None
    if not links:
        return None
    return (*links, f"root:{root.st_dev}:{root.st_ino}", cgroup.decode(errors="replace"))


def _read(fd: int) -> bytes:
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        return data
    finally:
        os.close(fd)


def peer_pid(conn: socket.socket) -> int:
    """The pid of the process that connected `conn`, in this process's PID namespace (0 when
    it has none here)."""
    pid, _uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid


_OWN: tuple[str, ...] | None = None  # this process's context as first read


def own() -> tuple[str, ...] | None:
    """This process's context. Its namespaces and root are read once (a resident process of
    hostrt never enters others), its cgroups each time (an administrator may move it)."""
    global _OWN
    if _OWN is None:
        _OWN = of("self")
        return _OWN
    try:
        cgroup = _read(os.open("/proc/self/cgroup", os.O_RDONLY | os.O_CLOEXEC)).decode(errors="replace")
    except OSError:
        return None
    return (*_OWN[:-1], cgroup)


def same_as_peer(conn: socket.socket) -> bool:
    """Whether the peer of `conn` runs in exactly this process's context."""
    mine = own()
    return mine is not None and of(peer_pid(conn)) == mine


def peer_differs(conn: socket.socket) -> bool:
    """Whether the peer of `conn` is known to run in another context: invisible from this PID
    namespace, or seen to differ. One whose context cannot be read any more is not: it is
    exiting or gone (killed after sending a request that must still be carried out), and
    where a socket is named by its context (the monitor's), it chose this one itself."""
    pid = peer_pid(conn)
    if pid == 0:
        return True
    theirs = of(pid)
    return theirs is not None and theirs != own()


def key(context: tuple[str, ...] | None = None) -> str:
    """A short name for a context (this process's by default), to keep one resident process
    per context apart from the others'."""
    context = context if context is not None else of("self")
    return f"{zlib.crc32(repr(context).encode()):08x}"
