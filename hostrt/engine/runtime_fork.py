"""The runtime called in a fork of this process instead of a new `hostrt-runtime` process.

Where an interpreter start is expensive (a TCG guest: ~0.3 s each, and a run needs
several runtime calls), a process that already imported `backends.linux_native` forks and
runs the same command-line entry point, with the same stdio, arguments and exit code as
the binary would have. Standard library only.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from typing import Any

from hostrt.engine.runtime_cli import Runtime

_RESET_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2)


def _fd_of(stream: Any, default: int) -> tuple[int | None, int | None]:
    """(fd for the child, our end of a pipe to read) for a subprocess-style stdio argument."""
    if stream is None:
        return default, None
    if stream == subprocess.DEVNULL:
        return os.open(os.devnull, os.O_RDWR), None
    if stream == subprocess.PIPE:
        read, write = os.pipe()
        return write, read
    return (stream if isinstance(stream, int) else stream.fileno()), None


class ForkedRuntime(Runtime):
    """`Runtime` whose commands run in a fork that calls the runtime's `main` directly."""

    def _execute(self, argv: list[str], stdin: Any, stdout: Any, stderr: Any,
                 timeout: float | None) -> subprocess.CompletedProcess[bytes]:
        import threading

        if threading.active_count() > 1:  # a fork copies one thread and whatever locks the others held
            return super()._execute(argv, stdin, stdout, stderr, timeout)
        from backends.linux_native.__main__ import main

        child_in, _ = _fd_of(stdin, 0)
        child_out, out_pipe = _fd_of(stdout, 1)
        child_err, err_pipe = _fd_of(stderr, 2)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child leaves through os._exit
            code = 1
            try:
                for target, fd in ((0, child_in), (1, child_out), (2, child_err)):
                    if fd != target:
                        os.dup2(fd, target)
                for fd in (out_pipe, err_pipe):
                    if fd is not None:
                        os.close(fd)
                for sig in _RESET_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                code = main(list(argv))
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        for fd, passed in ((child_in, stdin), (child_out, stdout), (child_err, stderr)):
            if passed in (subprocess.DEVNULL, subprocess.PIPE) and fd is not None:
                os.close(fd)
        try:
            captured = _collect(pid, [fd for fd in (out_pipe, err_pipe) if fd is not None], timeout)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        _, status = os.waitpid(pid, 0)
        return subprocess.CompletedProcess([self.binary, *argv], os.waitstatus_to_exitcode(status),
                                           captured.get(out_pipe) if out_pipe is not None else None,
                                           captured.get(err_pipe) if err_pipe is not None else None)


def _collect(pid: int, pipes: list[int], timeout: float | None) -> dict[int, bytes]:
    """Read the captured pipes to their end (the child and whatever inherited them closed them)."""
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    data: dict[int, bytearray] = {fd: bytearray() for fd in pipes}
    open_fds = list(pipes)
    try:
        while open_fds:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select(open_fds, [], [], wait)
            if not ready:
                raise subprocess.TimeoutExpired(str(pid), timeout or 0)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    data[fd].extend(chunk)
                else:
                    open_fds.remove(fd)
    finally:
        for fd in pipes:
            os.close(fd)
    return {fd: bytes(buffer) for fd, buffer in data.items()}
