"""Sockets made inside another process's network namespace, for proxies that stay outside it.

A socket belongs to the namespace its creating thread was in when it was made, and stays
there. So a proxy listening in one namespace can reach a container that has only its own
loopback: switch this thread into the container's namespace (setns), make the upstream
socket, switch back. No veth, bridge or address is needed (this is how the VM path reaches
its containers inside the guest). Standard library only (ctypes: os.setns is Python 3.12+).
"""

from __future__ import annotations

import ctypes
import os
import socket
from pathlib import Path

CLONE_NEWNET = 0x40000000
_libc = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def socket_in(pid_file: Path, kind: int) -> socket.socket:
    """An AF_INET socket of `kind` in the network namespace of the process named by `pid_file`.

    OSError if that process is gone (the container is not running).
    """
    pid = int(pid_file.read_text())
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                return socket.socket(socket.AF_INET, kind)
            finally:
                _setns(own)  # never leave this thread in the container's namespace
        finally:
            os.close(target)
    finally:
        os.close(own)


def socket_in_namespace(path: Path, kind: int) -> socket.socket:
    """An AF_INET socket of `kind` in the network namespace at `path` (a rootless container's
    bind-mounted namespace file); OSError if it is gone.

    Made by a short-lived thread that enters the namespace and ends there: in a user
    namespace (rootless) a thread may enter a container's namespace, which that user
    namespace owns, but never come back to the host's, which it does not (setns needs
    CAP_SYS_ADMIN over the namespace's owner). The caller's threads never move.
    """
    import threading

    made: list[socket.socket | OSError] = []

    def make() -> None:
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
            finally:
                os.close(target)
            made.append(socket.socket(socket.AF_INET, kind))
        except OSError as err:
            made.append(err)

    thread = threading.Thread(target=make, name="hostrt-netns-socket", daemon=True)
    thread.start()
    thread.join()
    if isinstance(made[0], OSError):
        raise made[0]
    return made[0]
