"""process.terminal: a pty from the container's own devpts, its master sent over
--console-socket with SCM_RIGHTS (as runc does), its slave made the controlling
terminal and stdio of the container process."""

from __future__ import annotations

import fcntl
from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
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


def receive_master(sock_fd: int) -> int:
    """The other end of send_master: the pty master fd."""
    import socket

    sock = socket.socket(fileno=sock_fd)
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 4096, 1)
    finally:
        sock.close()
    if not fds:
        raise OSError(5, "no pty master received from the container")
    return fds[0]


def relay(master: int, child_exited) -> None:
    """Copy our stdin to the pty and the pty to our stdout until CHILD_EXITED() is true and
    the pty is drained; our terminal is raw meanwhile (the container's pty does the
    line discipline)."""
    import select
    import termios
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        try:
            rows, cols = struct.unpack("HHHH", fcntl.ioctl(0, 0x5413, b"\0" * 8))[:2]  # TIOCGWINSZ
            set_size(master, (rows, cols))
        except OSError:
            pass
    inputs = [master, 0]
    try:
        while True:
            ready = select.select(inputs, [], [], 0.1)[0]
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed
                    data = b""
                if not data:
                    return
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    inputs.remove(0)
            if not ready and child_exited():
                return
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
