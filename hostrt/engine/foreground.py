"""A foreground `run`/`start -a` on this host: the hostrt process creates the container,
copies its output to the terminal and to its log, passes signals on, and waits for it.

hostrt becomes a child subreaper first, so the container's init (orphaned when the runtime
that created it exits) is re-parented to us and its exit status is ours to collect.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
from typing import TYPE_CHECKING

from hostrt.engine import failpoints, supervise
from hostrt.engine.logfile import entry
from hostrt.engine.runtime_cli import RuntimeCallError

if TYPE_CHECKING:
    from collections.abc import Callable

    from hostrt.engine.native import NativeBackend
    from hostrt.engine.records import ContainerRecord


def _copy_output(pipes: dict[int, tuple[str, int]], log_path: str) -> None:
    """Tee container output to our stdout/stderr and the JSON-lines log until both pipes close."""
    selector = selectors.DefaultSelector()
    for fd in pipes:
        selector.register(fd, selectors.EVENT_READ)
    partial: dict[int, bytes] = {}
    with open(log_path, "a") as log:
        while selector.get_map():
            for key, _ in selector.select():
                stream, target = pipes[key.fd]
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                    if partial.get(key.fd):
                        log.write(entry(stream, partial.pop(key.fd).decode(errors="replace")))
                    continue
                os.write(target, chunk)
                *lines, rest = (partial.pop(key.fd, b"") + chunk).split(b"\n")
                log.writelines(entry(stream, line.decode(errors="replace") + "\n") for line in lines)
                if rest:
                    partial[key.fd] = rest


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _start_and_wait(backend: "NativeBackend", record: ContainerRecord, pid: int, relay: "Callable[[], None]") -> int:
    """Start the created container, relay its output while it runs, collect its status."""
    from hostrt.engine.native import runtime_error

    failpoints.reached("after-create")
    backend.on_started(record, pid)
    forwarded = {sig: signal.signal(sig, lambda signum, _frame: _forward(pid, signum))
                 for sig in supervise.FORWARDED_SIGNALS}
    try:
        try:
            backend.runtime.start(record.id)
        except RuntimeCallError as err:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            backend.record_end(record, 255)
            raise runtime_error(err) from None
        failpoints.reached("after-start")
        relay()
        _, status = os.waitpid(pid, 0)
    finally:
        for sig, previous in forwarded.items():
            signal.signal(sig, previous)
    code = supervise.exit_code_of(status)
    backend.record_end(record, code)
    return code


def run_attached(backend: "NativeBackend", record: ContainerRecord, interactive: bool) -> int:
    """Create and start `record`'s container attached to this terminal; its exit code."""
    from hostrt.engine.native import runtime_error

    if record.options.tty:
        return _run_with_tty(backend, record, interactive)
    supervise.become_subreaper()
    directory = backend.directory(record)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    stdin = sys.stdin.fileno() if interactive else os.open(os.devnull, os.O_RDONLY)
    try:
        pid = backend.runtime.create(record.id, directory, directory / supervise.PID_FILE, stdin, out_w, err_w)
    except RuntimeCallError as err:
        os.close(out_r)
        os.close(err_r)
        raise runtime_error(err) from None
    finally:
        os.close(out_w)
        os.close(err_w)
        if not interactive:
            os.close(stdin)
    try:
        return _start_and_wait(backend, record, pid, lambda: _copy_output(
            {out_r: ("stdout", sys.stdout.fileno()), err_r: ("stderr", sys.stderr.fileno())},
            str(backend.log_path(record))))
    finally:
        os.close(out_r)
        os.close(err_r)


def _run_with_tty(backend: "NativeBackend", record: ContainerRecord, interactive: bool) -> int:
    """`-t`: the container's stdio is a pty whose master the runtime hands us; we relay it."""
    from hostrt.engine import console
    from hostrt.engine.native import runtime_error

    supervise.become_subreaper()
    directory = backend.directory(record)
    try:
        with console.console_socket() as (listener, socket_path), open(os.devnull, "rb") as devnull:
            pid = backend.runtime.create(record.id, directory, directory / supervise.PID_FILE, devnull, devnull,
                                         devnull, console_socket=socket_path)
            master = console.receive_master(listener)
    except (RuntimeCallError, OSError) as err:
        raise runtime_error(err if isinstance(err, RuntimeCallError) else RuntimeCallError(str(err))) from None
    with open(backend.log_path(record), "a") as log:
        def show(chunk: bytes) -> None:
            os.write(sys.stdout.fileno(), chunk)
            log.write(entry("stdout", chunk.decode(errors="replace")))

        return _start_and_wait(backend, record, pid, lambda: console.relay(master, interactive, show))
