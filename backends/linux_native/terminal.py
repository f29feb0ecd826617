"""process.terminal: a pty from the container's own devpts, its master sent over
--console-socket with SCM_RIGHTS (as runc does), its slave made the controlling
terminal and stdio of the container process."""

from __future__ import annotations

import fcntl
import os
import struct

TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414


def open_pty(ptmx: str, pts_dir: str) -> tuple[int, int, str]:
    """(master fd, slave fd, slave path inside the container) from PTMX."""
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
    slave = os.open(f"{pts_dir}/{number}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave, f"/dev/pts/{number}"


def set_size(fd: int, size: tuple[int, int] | None) -> None:
    if size and size[0] and size[1]:
        fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))


def send_master(socket_fd: int, master: int, name: str) -> None:
    import socket

    sock = socket.socket(fileno=socket_fd)
    try:
        socket.send_fds(sock, [name.encode()], [master])
    finally:
        sock.detach()


def make_controlling(slave: int) -> None:
    """Slave becomes stdin/stdout/stderr and the controlling terminal (after setsid)."""
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
