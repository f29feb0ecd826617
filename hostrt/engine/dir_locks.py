"""Per-container locks: an flock on the container's own directory, re-entrant within a process.

Holders: the command creating a container, from the moment its record exists until the
container has started (so `system prune` never takes a container for a crash leftover while
it is being made); every command that changes or removes a container; the monitor, for the
start a client handed over with the lock (the descriptor travels with the request, so the
lock outlives a client killed in the middle). Readers (`ps`) take none.

The lock is on the directory itself, so it needs no file that could be recreated after a
removal, and it survives the rename that publishes a new container. Whoever waited for it
checks that the path still names the directory it locked: a container removed meanwhile is
`GONE`, never recreated. The kernel drops the lock when its last holder dies. Standard
library only (the monitor uses it). Windows has no flock and opens no directories: there
only the check that the directory exists remains (its containers run in VMs).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HELD, BUSY, GONE = "held", "busy", "gone"


class DirLocks:
    """The directory locks this process holds, counted so that nested holders share one."""

    def __init__(self) -> None:
        self._held: dict[str, list[int]] = {}  # path -> [fd, depth]

    def acquire(self, path: Path, timeout: float | None = None) -> str:
        """HELD once locked (waiting up to `timeout` seconds, None: as long as it takes), BUSY
        if another process still holds it then, GONE if the directory is not there (any more)."""
        key = str(path)
        held = self._held.get(key)
        if held is not None:
            held[1] += 1
            return HELD
        if sys.platform == "win32":
            return HELD if os.path.isdir(key) else GONE
        try:
            fd = os.open(key, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return GONE
        try:
            if not _lock(fd, timeout):
                os.close(fd)
                return BUSY
            if not _same_directory(key, fd):  # removed (renamed away) while we waited
                os.close(fd)
                return GONE
        except BaseException:
            os.close(fd)
            raise
        self._held[key] = [fd, 1]
        return HELD

    def release(self, path: Path) -> None:
        """Undo one `acquire`; the last one unlocks (for every descriptor sharing the lock)."""
        held = self._held.get(str(path))
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            self.forget(path)

    def forget(self, path: Path) -> None:
        """Unlock and close whatever depth is held (the directory was removed)."""
        held = self._held.pop(str(path), None)
        if held is not None:
            import fcntl

            try:
                fcntl.flock(held[0], fcntl.LOCK_UN)
            finally:
                os.close(held[0])

    def moved(self, old: Path, new: Path) -> None:
        """The held directory was renamed from `old` to `new` (the lock stays on it)."""
        held = self._held.pop(str(old), None)
        if held is not None:
            self._held[str(new)] = held

    def fd(self, path: Path) -> int | None:
        """The locked descriptor, to hand the lock to another process with SCM_RIGHTS."""
        held = self._held.get(str(path))
        return None if held is None else held[0]

    @contextlib.contextmanager
    def probe(self, path: Path, timeout: float | None = 0) -> Iterator[str]:
        """HELD (and released after the block), BUSY or GONE."""
        state = self.acquire(path, timeout)
        try:
            yield state
        finally:
            if state == HELD:
                self.release(path)


def _lock(fd: int, timeout: float | None) -> bool:
    import fcntl

    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def _same_directory(path: str, fd: int) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    locked = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (locked.st_dev, locked.st_ino)
