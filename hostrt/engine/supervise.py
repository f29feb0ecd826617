"""What whoever waits for a container does when it ends: exit code, OOM verdict, exit file.

Used by a foreground `run` (the hostrt process itself waits) and by the monitor daemon
(detached containers). Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

EXIT_FILE = "exit.json"
EXIT_RESERVED = ".exit-reserved"  # the exit record's space, claimed before the container starts
_EXIT_SIZE = 256  # bytes: the record is under 100
STARTED_FILE = "started.json"
PID_FILE = "init.pid"
PR_SET_CHILD_SUBREAPER = 36
# Where the kernel counts OOM kills for a container cgroup named /hostrt/<id>.
_OOM_COUNTERS = ("/sys/fs/cgroup/memory/hostrt/{id}/memory.oom_control", "/sys/fs/cgroup/hostrt/{id}/memory.events")


def become_subreaper() -> None:
    """Adopt orphaned descendants: a container's init outlives the runtime that created it,
    and we must be its parent to collect its exit status."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def exit_code_of(wait_status: int) -> int:
    """Shell convention: the exit code, or 128 + the signal that killed it."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def oom_killed(container_id: str) -> bool:
    """Whether the kernel's OOM killer fired in the container's memory cgroup (v1 or v2)."""
    from backends.linux_native.cgroups import read_keyed

    return any(read_keyed(template.format(id=container_id), "oom_kill") > 0 for template in _OOM_COUNTERS)


def reserve_exit(container_dir: Path) -> None:
    """Claim the blocks the exit record will need while the disk has room. A container can
    fill the disk with its own output (its log), and its end must still be recorded then.
    Best effort: without a reservation `write_exit` allocates as usual."""
    try:
        fd = os.open(container_dir / EXIT_RESERVED, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b" " * _EXIT_SIZE)  # written, not truncated to size: a sparse file reserves nothing
        finally:
            os.close(fd)
    except OSError:
        pass


def write_exit(container_dir: Path, exit_code: int, oom: bool) -> None:
    """Record the end of a container beside its record (atomically); the engine folds it in.
    Written into the reserved file in place (no new block) and renamed, when there is one."""
    data = json.dumps({"exit_code": exit_code, "oom_killed": oom, "finished_at": time.time()}).encode()
    try:
        fd = os.open(container_dir / EXIT_RESERVED, os.O_WRONLY | os.O_CLOEXEC)  # no O_TRUNC: keep its blocks
    except FileNotFoundError:
        fd = None
    if fd is not None:
        try:
            os.pwrite(fd, data.ljust(_EXIT_SIZE), 0)  # JSON allows the trailing spaces
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(container_dir / EXIT_RESERVED, container_dir / EXIT_FILE)
        return
    replace_durably(container_dir / EXIT_FILE, data)


def replace_durably(path: Path, data: bytes) -> None:
    """PATH holds DATA, or what it held before: written to a temporary file beside it, synced,
    then renamed over it (records and exit files survive a crash whole or not at all)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_started(container_dir: Path, pid: int) -> None:
    """The monitor started the container: what its client would have recorded, had it lived."""
    tmp = container_dir / f".{STARTED_FILE}.tmp"
    tmp.write_text(json.dumps({"pid": pid, "started_at": time.time()}))
    os.replace(tmp, container_dir / STARTED_FILE)


def read_started(container_dir: Path) -> dict | None:
    try:
        return json.loads((container_dir / STARTED_FILE).read_text())
    except (OSError, ValueError):
        return None


def read_exit(container_dir: Path) -> dict | None:
    try:
        return json.loads((container_dir / EXIT_FILE).read_text())
    except (OSError, ValueError):
        return None


def pid_exists(pid: int) -> bool:
    """Whether the process exists at all; a zombie does (its status is still to be collected,
    and whoever collects it writes the exit file)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Signals a foreground `run` passes on to the container (those this OS has).
FORWARDED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2") if hasattr(signal, name)
)
