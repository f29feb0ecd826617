"""Run hostrt-runtime's command line in a forked child instead of a new interpreter.

A `hostrt-runtime create` or `start` is a fresh CPython each time: start-up and imports cost
more than the operation. A long-lived caller (the monitor) imports the runtime once and forks
for each call; the child is what the exec'd runtime would be, with the same argv, stdio and
exit status, minus the interpreter start. Standard library only (the runtime is too).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

# The runtime modules a create/start/delete needs, imported once by `preload`.
_PRELOAD = ("backends.linux_native.__main__", "backends.linux_native.ops.create", "backends.linux_native.ops.start",
            "backends.linux_native.ops.delete", "backends.linux_native.process", "backends.linux_native.init",
            "backends.linux_native.cgroups.devices_bpf", "backends.linux_native.cgroups.bpf_prog")


def is_own_runtime(binary: str) -> bool:
    """Only hostrt's own runtime can run in-process; runc or crun are always exec'd."""
    return Path(binary).name == "hostrt-runtime" and hasattr(os, "fork")


_loaded: bool | None = None


def preload() -> bool:
    """Import the runtime now (once) so each forked call starts warm; False if it is not importable."""
    global _loaded
    if _loaded is None:
        try:
            for module in _PRELOAD:
                __import__(module)
            from backends.linux_native import seccomp
            from backends.linux_native.cgroups import devices_bpf

            seccomp.preload()
            devices_bpf.preload()
            _loaded = True
        except ImportError:
            _loaded = False
    return _loaded


def usable(command: str) -> bool:
    """Whether a fork can run the runtime's COMMAND now: it is importable, no other thread runs
    here (a fork copies only the calling thread; a foreground run with published ports has
    one), and, for a command that forks a container process, this process runs from the sealed
    copy of its interpreter (backends/linux_native/sealed_exe.py: the long-lived callers
    re-execute themselves that way; a plain command line execs hostrt-runtime, which does)."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() != 1 or not preload():
        return False
    from backends.linux_native import sealed_exe

    return command not in sealed_exe.FORKS_CONTAINER_PROCESS or sealed_exe.is_sealed()


# What the sealed interpreter runs in place of the hostrt-runtime script (whose form differs: a
# sh/Python polyglot on hosts, a sh wrapper in the guest): the runtime this process imported.
_RUN_RUNTIME = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                "from backends.linux_native.__main__ import exit_now, main; exit_now(main())")


def exec_args(command: str, argv: list[str]) -> tuple[list[str], dict]:
    """(argv, extra subprocess arguments) to exec hostrt-runtime's ARGV: for a COMMAND that forks
    a container process, the runtime this process imported, run by a sealed copy of this
    interpreter passed as /proc/self/fd/N, which spares the runtime its own re-execution
    (sealed_exe.py)."""
    from backends.linux_native import sealed_exe

    if command not in sealed_exe.FORKS_CONTAINER_PROCESS or not is_own_runtime(argv[0]) or not preload():
        return argv, {}
    import backends

    package_parent = str(Path(backends.__path__[0]).parent)
    fd = sealed_exe.copy_fd()
    return ([sys.executable, "-S", "-c", _RUN_RUNTIME, package_parent, *argv[1:]],
            {"executable": f"/proc/self/fd/{fd}", "pass_fds": (fd,)})


def _child(argv: list[str], fds: tuple[int, int, int]) -> None:
    """In the fork: the runtime's stdio, default signal handling, then its main; never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in signal.valid_signals():  # the caller's Python handlers (forwarding, wake-ups) are not ours
            if signum not in (signal.SIGKILL, signal.SIGSTOP) and callable(signal.getsignal(signum)):
                signal.signal(signum, signal.SIG_DFL)
        high = [os.dup(fd) for fd in fds]  # above 2, so no target is overwritten before it is read
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        # Nothing else of ours may reach the container's init (our listening socket, other
        # containers' pipes), as with close_fds for an exec'd runtime: init holds its fds
        # until it execs, and a created container may wait long for `start`.
        os.closerange(3, 2**31 - 1)
        from backends.linux_native.__main__ import main

        code = main(argv)
    except BaseException as err:  # noqa: BLE001 - the parent only sees an exit status
        try:
            os.write(2, f"hostrt-runtime: {err.__class__.__name__}: {err}\n".encode())
        except OSError:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os._exit(code if isinstance(code, int) else 1)


def run(argv: list[str], stdin: int, stdout: int, stderr: int) -> int:
    """The runtime's exit code for `hostrt-runtime ARGV`, run in a forked child with these fds."""
    sys.stdout.flush()
    sys.stderr.flush()  # buffered output must not be written twice, by us and by the child
    pid = os.fork()
    if pid == 0:
        _child(argv, (stdin, stdout, stderr))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def run_captured(argv: list[str]) -> tuple[int, bytes, bytes]:
    """(exit code, stdout, stderr) of a runtime command whose output is small (create/start/delete)."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, open(os.devnull, "rb") as devnull:
        code = run(argv, devnull.fileno(), out.fileno(), err.fileno())
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read()
