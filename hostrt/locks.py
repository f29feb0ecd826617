"""Advisory file locks (flock on POSIX, a byte-range lock on Windows) held for a `with` block.

Every hostrt store (content, records, networks, leases, guest images, the monitor start)
serialises its writers with this one helper. Standard library only: the guest uses it too.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """Hold a lock on `path` (created if missing); the kernel drops it if the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if sys.platform == "win32":  # tested under the simulated Windows (tests/test_simulated_hosts.py)
            import msvcrt

            while True:  # Windows has no shared flock: readers take it exclusively too
                try:
                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    time.sleep(0.05)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
