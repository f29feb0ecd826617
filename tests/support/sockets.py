"""What listens on the host, read from the kernel's tables: tests check that a forward or an
agent listens where it should (127.0.0.1 only) and that nothing is left once it is gone."""

from __future__ import annotations

import socket
from pathlib import Path


def listeners(port: int) -> list[str]:
    """Local addresses of the host's TCP sockets listening on `port` (from /proc/net/tcp{,6})."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]) if len(address) == 8 else address)
    return found
