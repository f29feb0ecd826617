"""A foreground `run`/`start -a`: this hostrt process creates the container, copies its
output to the terminal and to its log, passes signals on, and returns its exit code.

hostrt becomes a child subreaper first, so the container's init (orphaned when the runtime
that created it exits) is re-parented to us and its exit status is ours to collect.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
from datetime import datetime, timezone

from hostrt.engine import supervise
from hostrt.engine.containers import Engine, runtime_error
from hostrt.engine.records import ContainerRecord
from hostrt.engine.runtime_cli import RuntimeCallError
from hostrt.errors import HostrtError


def _log_line(stream: str, text: str) -> str:
    import json

    stamp = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return json.dumps({"log": text, "stream": stream, "time": stamp}) + "\n"


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
                        log.write(_log_line(stream, partial.pop(key.fd).decode(errors="replace")))
                    continue
                os.write(target, chunk)
                *lines, rest = (partial.pop(key.fd, b"") + chunk).split(b"\n")
                log.writelines(_log_line(stream, line.decode(errors="replace") + "\n") for line in lines)
                if rest:
                    partial[key.fd] = rest


def run_attached(engine: Engine, record: ContainerRecord, interactive: bool) -> int:
    """Create and start `record`'s container attached to this terminal; its exit code.

    Its published ports are served by a thread of this process for as long as it runs.
    """
    from hostrt.network.proxy import ThreadedProxy

    try:
        ports = ThreadedProxy(engine.records.dir_of(record.id))
    except OSError as err:
        if record.auto_remove:
            engine.remove(record.id, force=True)
        raise HostrtError(str(err)) from None
    try:
        return _run_plain(engine, record, interactive)
    finally:
        ports.close()


def _run_plain(engine: Engine, record: ContainerRecord, interactive: bool) -> int:
    if record.options.tty:
        return _run_with_tty(engine, record, interactive)
    supervise.become_subreaper()
    directory = engine.records.dir_of(record.id)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    stdin = sys.stdin.fileno() if interactive else os.open(os.devnull, os.O_RDONLY)
    try:
        pid = engine.runtime.create(record.id, directory, directory / supervise.PID_FILE, stdin, out_w, err_w)
    except RuntimeCallError as err:
        engine.runtime.delete(record.id, force=True)
        if record.auto_remove:
            engine.remove(record.id, force=True)
        raise runtime_error(err) from None
    finally:
        os.close(out_w)
        os.close(err_w)
        if not interactive:
            os.close(stdin)
    engine.mark_started(record, pid)
    forwarded = {sig: signal.signal(sig, lambda signum, _frame: _forward(pid, signum))
                 for sig in supervise.FORWARDED_SIGNALS}
    try:
        try:
            engine.runtime.start(record.id)
        except RuntimeCallError as err:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            engine.finish(record, 255)
            raise runtime_error(err) from None
        _copy_output({out_r: ("stdout", sys.stdout.fileno()), err_r: ("stderr", sys.stderr.fileno())},
                     str(engine.log_path(record)))
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(out_r)
        os.close(err_r)
        for sig, previous in forwarded.items():
            signal.signal(sig, previous)
    code = supervise.exit_code_of(status)
    engine.finish(record, code)
    return code


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _run_with_tty(engine: Engine, record: ContainerRecord, interactive: bool) -> int:
    """`-t`: the container's stdio is a pty whose master the runtime hands us; we relay it."""
    from hostrt.engine import console

    supervise.become_subreaper()
    directory = engine.records.dir_of(record.id)
    try:
        with console.console_socket() as (listener, socket_path), open(os.devnull, "rb") as devnull:
            pid = engine.runtime.create(record.id, directory, directory / supervise.PID_FILE, devnull, devnull,
                                        devnull, console_socket=socket_path)
            master = console.receive_master(listener)
    except (RuntimeCallError, OSError) as err:
        engine.runtime.delete(record.id, force=True)
        if record.auto_remove:
            engine.remove(record.id, force=True)
        raise runtime_error(err if isinstance(err, RuntimeCallError) else RuntimeCallError(str(err))) from None
    engine.mark_started(record, pid)
    with open(engine.log_path(record), "a") as log:
        def show(chunk: bytes) -> None:
            os.write(sys.stdout.fileno(), chunk)
            log.write(_log_line("stdout", chunk.decode(errors="replace")))

        try:
            engine.runtime.start(record.id)
        except RuntimeCallError as err:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            engine.finish(record, 255)
            raise runtime_error(err) from None
        console.relay(master, interactive, show)
    _, status = os.waitpid(pid, 0)
    code = supervise.exit_code_of(status)
    engine.finish(record, code)
    return code
