"""Bring `lo` up in a network namespace the runtime just made, as runc does.

A new network namespace starts with its loopback down: without this, a container cannot
reach even its own 127.0.0.1 (and nothing can reach it there from inside its namespace).
Two ioctls on a datagram socket made through libc: importing the socket module would cost
more than the rest of this on every container start.
"""

from __future__ import annotations

import fcntl
import os
import sys

from backends.linux_native import syscalls

AF_INET, SOCK_DGRAM, SOCK_CLOEXEC = 2, 2, 0o2000000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP = 0x1
_NAME = b"lo".ljust(16, b"\0")  # struct ifreq: the name, then ifr_flags in a 24-byte union


def _ifreq(flags: int) -> bytes:
    return _NAME + flags.to_bytes(2, sys.byteorder) + bytes(22)


def bring_up() -> None:
    fd = syscalls.socket_fd(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC)
    try:
        flags = int.from_bytes(fcntl.ioctl(fd, SIOCGIFFLAGS, _ifreq(0))[16:18], sys.byteorder)
        if not flags & IFF_UP:
            fcntl.ioctl(fd, SIOCSIFFLAGS, _ifreq(flags | IFF_UP))
    finally:
        os.close(fd)
