"""Bring `lo` up in a network namespace the runtime just made, as runc does.

A new network namespace starts with its loopback down: without this, a container cannot
reach even its own 127.0.0.1 (and nothing can reach it there from inside its namespace).
"""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP = 0x1
_IFREQ = struct.Struct("16sh22x")  # struct ifreq: name, then ifr_flags in the 24-byte union


def bring_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _, flags = _IFREQ.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0)))
        if not flags & IFF_UP:
            fcntl.ioctl(sock, SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | IFF_UP))
