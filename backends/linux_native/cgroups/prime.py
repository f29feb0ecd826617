"""Priming the kernel's cgroup attach lock before `create` needs it.

Every write to cgroup.procs takes the global threadgroup rwsem for writing, and the first
one after a quiet spell waits a whole RCU grace period (5-30 ms on this machine, as long
for runc and crun); writes within that grace period's wake are fast. A no-op move of the
runtime into its own cgroup, started in a thread before the imports and the spec parsing,
overlaps that wait with them instead of holding up the container's own attach."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)


def _own_procs_files() -> list[str]:
    """cgroup.procs of the cgroups this process is in, most likely to exist first."""
    fd = os.open("/proc/self/cgroup", os.O_RDONLY | os.O_CLOEXEC)
    try:
        text = os.read(fd, 65536).decode()
    finally:
        os.close(fd)
    found = []
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        path = path.rstrip("/")
        if controllers:
            found.append(f"/sys/fs/cgroup/{controllers.replace('name=', '')}{path}/cgroup.procs")
        else:  # cgroup2: the whole tree (v2 host) or its hybrid mount
            found.append(f"/sys/fs/cgroup{path}/cgroup.procs")
            found.append(f"/sys/fs/cgroup/unified{path}/cgroup.procs")
    return found


def _write_and_close(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    except OSError:
        pass
    finally:
        os.close(fd)


def prime_attach() -> None:
    """Start the no-op move in a thread. The file is opened here, so the thread needs the
    GIL only to call write (and imports nothing: fork safety). Best effort: errors are
    ignored, the container's own attach then simply pays the wait."""
    import _thread

    pid = str(os.getpid()).encode()
    try:
        paths = _own_procs_files()
    except OSError:
        return
    for path in paths:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            continue
        _thread.start_new_thread(_write_and_close, (fd, pid))
        return
