"""Pseudo-terminals for `-t`: receive the pty master the runtime sends over the console
socket (as runc does), and relay between it and the user's terminal in raw mode.

Standard library only; termios and fcntl are imported where used (POSIX-only modules).
"""

from __future__ import annotations

import array
import contextlib
import os
import selectors
import signal
import socket
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def console_socket() -> Iterator[tuple[socket.socket, Path]]:
    """A listening console socket in a private temporary directory (socket paths are
    limited to 108 bytes, container directories can be longer); removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="hostrt-console-"))  # mode 0700
    path = directory / "sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        listener.listen(1)
        yield listener, path
    finally:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)


def receive_master(listener: socket.socket, timeout: float = 5.0) -> int:
    """Take the pty master fd the runtime sent (SCM_RIGHTS) while it ran `create`.

    The runtime's connection waits in the listen backlog with its message, so this runs
    after `create` has returned."""
    listener.settimeout(timeout)
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        raise OSError("the runtime did not send a terminal") from None
    with conn:
        fds = array.array("i")
        _msg, ancillary, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise OSError("the runtime connected to the console socket but sent no terminal")
    return fds[0]


def copy_window_size(source_fd: int, target_fd: int) -> None:
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(source_fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(target_fd, termios.TIOCSWINSZ, size)
    except OSError:
        pass  # not a terminal on our side: the pty keeps its default size


def relay(master: int, forward_input: bool, on_output: Callable[[bytes], None]) -> None:
    """Copy our stdin to the pty and the pty to `on_output` until the container closes it.

    Our terminal is in raw mode meanwhile (Ctrl-C reaches the container as a byte, as with
    docker -it), and window size changes follow through SIGWINCH.
    """
    stdin = sys.stdin.fileno()
    if os.isatty(stdin):
        copy_window_size(stdin, master)
    previous = signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(stdin, master)) if os.isatty(stdin) else None
    selector = selectors.DefaultSelector()
    selector.register(master, selectors.EVENT_READ, "master")
    if forward_input:
        selector.register(stdin, selectors.EVENT_READ, "stdin")
    try:
        with raw_terminal(forward_input):
            while True:
                for key, _ in selector.select():
                    if key.data == "master":
                        try:
                            chunk = os.read(master, 65536)
                        except OSError:  # EIO: the last process holding the pty's other end is gone
                            return
                        if not chunk:
                            return
                        on_output(chunk)
                    else:
                        data = os.read(stdin, 65536)
                        if not data:
                            selector.unregister(stdin)
                            continue
                        os.write(master, data)
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
        os.close(master)


@contextlib.contextmanager
def raw_terminal(wanted: bool) -> Iterator[None]:
    """Our terminal in raw mode meanwhile, when `wanted` and stdin is one: every key, Ctrl-C
    included, goes to the container's pty as a byte (as with docker -it)."""
    stdin = sys.stdin.fileno()
    if not (wanted and os.isatty(stdin)):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(stdin)
    tty.setraw(stdin)
    try:
        yield
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
