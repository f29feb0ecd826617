"""Waiting for a process to exit without a polling loop: a pidfd becomes readable when
its process exits, whoever its parent is, so poll() on it sleeps exactly that long."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import select


def wait_exit(pid: int, timeout: float | None) -> bool:
    """Block until PID has exited (a zombie counts) or TIMEOUT seconds pass (None: no
    limit); True if it is gone. Does not reap."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return wait_fd(fd, timeout)
    finally:
        os.close(fd)


def wait_fd(pidfd: int, timeout: float | None) -> bool:
    """`wait_exit` for a pidfd already open (one opened before a signal that frees the pid)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
