"""`run`: create + start; in the foreground it also waits, forwards signals, returns the
container's exit status (128+N for signal N) and deletes the container."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)

from backends.linux_native.ops import create as create_op
from backends.linux_native.ops import start as start_op

# Signals a foreground `run` passes on to the container instead of dying of them.
FORWARDED = (1, 2, 3, 10, 12, 15, 28)


def _wants_relay(opts) -> bool:
    """A foreground run of a terminal process without --console-socket: we hold the pty."""
    if opts.detach or opts.console_socket:
        return False
    from backends.linux_native import jsonio

    config = jsonio.load_file(os.path.join(opts.bundle or os.getcwd(), "config.json"))
    return bool(((config or {}).get("process") or {}).get("terminal"))  # type: ignore[union-attr]


def main(command: str, glob, opts) -> int:
    detach = bool(opts.detach)
    relay_fd = ours = None
    if _wants_relay(opts):
        import socket

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        relay_fd = theirs.detach()
    ctr, _chan = create_op.create(glob.root, opts.id, opts.bundle or os.getcwd(), opts, reaper=not detach, console_fd=relay_fd)
    poststart = bool((ctr.config.get("hooks") or {}).get("poststart"))
    if detach:
        start_op.release(ctr, wait_exec=poststart)
        start_op.run_poststart(ctr)
        return 0
    import _signal

    from backends.linux_native.ops.delete import delete
    from backends.linux_native.process import wait_status_code

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(ctr.pid, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        _signal.signal(sig, forward)
    try:
        master = None
        if ours is not None:
            from backends.linux_native import terminal

            master = terminal.receive_master(ours.detach())
        start_op.release(ctr, wait_exec=poststart)
        start_op.run_poststart(ctr)
        if master is not None:
            exited: list[int] = []

            def child_exited() -> bool:
                done, status = os.waitpid(ctr.pid, os.WNOHANG)
                if done:
                    exited.append(wait_status_code(status))
                return bool(exited)

            terminal.relay(master, child_exited)
            code = exited[0] if exited else _wait(ctr.pid)
        else:
            code = _wait(ctr.pid)
    finally:
        if not opts.keep:
            delete(ctr, force=True)
    return code


def _wait(pid: int) -> int:
    """Reap children (we are their subreaper) until the init exits."""
    from backends.linux_native.process import wait_status_code

    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if done == pid:
            return wait_status_code(status)
