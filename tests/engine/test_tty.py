"""`run -it` from a real terminal: hostrt is started on a pseudo-terminal, as a user's shell would."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time

import pytest

from tests.engine.conftest import Hostrt

pytestmark = pytest.mark.root


def run_on_terminal(hostrt: Hostrt, args: list[str], typed: bytes, rows: int = 33, cols: int = 101,
                    timeout: float = 60) -> tuple[int, bytes]:
    """Run hostrt with a pty as its controlling terminal; type `typed`; return (exit code, screen)."""
    pid, master = pty.fork()
    if pid == 0:  # the child: hostrt on the terminal
        os.execve(sys.executable, [sys.executable, "-m", "hostrt", *args], hostrt.env)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    screen = b""
    deadline = time.monotonic() + timeout
    sent = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        if not sent and b"READY" in screen:
            os.write(master, typed)
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(master)
    return os.waitstatus_to_exitcode(status), screen


def test_interactive_tty_shell(hostrt: Hostrt) -> None:
    code, screen = run_on_terminal(
        hostrt, ["run", "--rm", "-it", "busybox", "sh", "-c", "echo READY; read line; tty; stty size; echo got:$line; exit 3"],
        b"hello\r")
    assert code == 3, screen
    text = screen.decode(errors="replace")
    assert "/dev/pts/" in text
    assert "33 101" in text, "the window size reaches the container"
    assert "got:hello" in text


def test_detached_tty_output_is_logged(hostrt: Hostrt) -> None:
    container_id = hostrt.ok("run", "-d", "-t", "busybox", "sh", "-c", "tty; echo done").strip()
    assert hostrt.ok("wait", container_id).strip() == "0"
    logs = hostrt.ok("logs", container_id)
    assert "/dev/pts/" in logs and "done" in logs
    hostrt.ok("rm", container_id)
