"""Blocking OOM notification for `events`: a file descriptor that becomes ready when the
kernel kills for memory in a container's cgroup, so the caller sleeps in poll() instead
of re-reading counters on a timer. v1 registers an eventfd on memory.oom_control through
cgroup.event_control; v2 polls memory.events, which the kernel flags (POLLPRI) on change."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import select

from backends.linux_native.cgroups import read_keyed


class OomWatch:
    """fileno()/events for poll(); pending() drains and returns the new OOM events."""

    events = select.POLLIN

    def fileno(self) -> int:
        raise NotImplementedError

    def pending(self) -> int:
        raise NotImplementedError

    def close(self) -> None: ...


class EventfdOomWatch(OomWatch):
    """cgroup v1: one eventfd count per OOM in the memory cgroup at DIRECTORY."""

    def __init__(self, directory: str) -> None:
        self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._control = os.open(os.path.join(directory, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            fd = os.open(os.path.join(directory, "cgroup.event_control"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, f"{self._efd} {self._control}".encode())
            finally:
                os.close(fd)
        except OSError:
            self.close()
            raise

    def fileno(self) -> int:
        return self._efd

    def pending(self) -> int:
        try:
            return os.eventfd_read(self._efd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        for fd in (self._efd, self._control):
            try:
                os.close(fd)
            except OSError:
                pass


class EventsFileOomWatch(OomWatch):
    """cgroup v2: the oom_kill count of DIRECTORY/memory.events, compared with the last read."""

    events = select.POLLPRI | select.POLLERR

    def __init__(self, directory: str) -> None:
        self._path = os.path.join(directory, "memory.events")
        self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        self._seen = read_keyed(self._path, "oom_kill")

    def fileno(self) -> int:
        return self._fd

    def pending(self) -> int:
        os.pread(self._fd, 4096, 0)  # re-arms the notification
        now = read_keyed(self._path, "oom_kill")
        new, self._seen = max(0, now - self._seen), now
        return new

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass
