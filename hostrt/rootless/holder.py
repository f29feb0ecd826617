"""The holder ("pause") process that keeps the user's rootless namespaces alive.

It is made once per user (and hostrt run directory) and lives until it is killed or the
machine restarts: a child unshares a user namespace, the parent maps it (idmaps.py), the
child unshares a mount namespace and becomes `sleep infinity`, which costs ~1 MB and ignores
the signals a terminal or a shell sends. Its pid and start time are kept in `pause.pid` so
a reused pid is never joined; a lock file keeps two first commands from making two holders.
"""

from __future__ import annotations

import os
import signal

from hostrt.rootless import CLONE_NEWNS, CLONE_NEWUSER, PID_FILE, RootlessError, start_time, find

LOCK_FILE = "pause.lock"
PROGRAM_NAME = "hostrt-rootless-pause"
MS_REC, MS_SLAVE = 0x4000, 0x80000


def ensure(directory: str) -> tuple[int, tuple[int, int]]:
    """Find the holder, or make it under the lock."""
    import fcntl

    try:
        os.makedirs(directory, 0o700, exist_ok=True)
        lock = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise RootlessError(f"cannot prepare {directory} for the rootless namespace: {err.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find(directory)
        if found is not None:
            return found
        pid = _spawn()
        tmp = os.path.join(directory, PID_FILE + ".tmp")
        with open(tmp, "w") as f:
            f.write(f"{pid} {start_time(pid)}\n")
        os.replace(tmp, os.path.join(directory, PID_FILE))
        found = find(directory)
        if found is None:
            raise RootlessError("the rootless namespace holder exited as soon as it started")
        return found
    finally:
        os.close(lock)


def _unshare(flags: int) -> None:
    unshare = getattr(os, "unshare", None)  # Python >= 3.12
    if unshare is not None:
        unshare(flags)
        return
    from backends.linux_native import syscalls

    syscalls.unshare(flags)


def _holder(to_parent: int, from_parent: int) -> None:
    """In the grandchild: the namespaces, then sleep forever. Never returns."""
    try:
        os.write(to_parent, b"%d\n" % os.getpid())
        os.setsid()
        os.chdir("/")
        _unshare(CLONE_NEWUSER)
        os.write(to_parent, b"u")
        if os.read(from_parent, 1) != b"m":  # mapped by the parent
            os._exit(1)
        _unshare(CLONE_NEWNS)
        from backends.linux_native import syscalls

        # Host mounts keep arriving here; nothing mounted here goes back out.
        syscalls.mount(None, "/", None, MS_REC | MS_SLAVE)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE,
                       signal.SIGUSR1, signal.SIGUSR2, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signum, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.write(to_parent, b"r")
        os.closerange(3, 1 << 16)
        sleep = next((p for p in ("/usr/bin/sleep", "/bin/sleep") if os.access(p, os.X_OK)), "sleep")
        os.execvp(sleep, [PROGRAM_NAME, "infinity"])
    except BaseException as err:  # noqa: BLE001 - whatever failed, the parent reports it
        try:
            os.write(to_parent, b"e" + str(err).encode()[:200])
        except OSError:
            pass
    os._exit(1)


def _spawn() -> int:
    """Make the holder (a grandchild, so no hostrt process has to reap it) and map it."""
    from hostrt.rootless import idmaps

    maps = idmaps.for_user(os.geteuid(), os.getegid())
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(up_r)
            os.close(down_w)
            if os.fork() == 0:
                _holder(up_w, down_r)
        finally:
            os._exit(0)
    os.close(up_w)
    os.close(down_r)
    try:
        os.waitpid(middle, 0)
        reply = b""
        while b"\n" not in reply:
            chunk = os.read(up_r, 64)
            if not chunk:
                raise RootlessError("cannot start the rootless namespace holder")
            reply += chunk
        line, _, rest = reply.partition(b"\n")
        pid = int(line)
        status = rest or os.read(up_r, 256)
        if status[:1] != b"u":
            raise RootlessError(f"cannot create a user namespace: {status[1:].decode(errors='replace') or 'the holder exited'}")
        try:
            idmaps.apply(pid, maps)
        except OSError as err:
            os.kill(pid, signal.SIGKILL)
            raise RootlessError(f"cannot map the rootless user namespace: {err}") from None
        os.write(down_w, b"m")
        status = status[1:] or os.read(up_r, 256)
        if status[:1] != b"r":
            raise RootlessError(f"cannot set up the rootless namespace: {status[1:].decode(errors='replace') or 'the holder exited'}")
        return pid
    finally:
        os.close(up_r)
        os.close(down_w)
