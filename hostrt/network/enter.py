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
    return socket_in_namespace(Path(f"/proc/{int(pid_file.read_text())}/ns/net"), kind)


def socket_in_namespace(path: Path, kind: int) -> socket.socket:
    """An AF_INET socket of `kind` in the network namespace at `path` (/proc/PID/ns/net or a
    bind-mounted namespace file, as a rootless container's); OSError if it is gone."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
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
