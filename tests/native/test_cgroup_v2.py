"""The cgroup v2 manager against a real cgroup2 hierarchy. On a v2 host the container
tests cover it; on this hybrid machine the (controller-less) cgroup2 mount at
/sys/fs/cgroup/unified still has the core files: procs, freeze, kill, events."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import pytest

from backends.linux_native.cgroups import manager_for
from backends.linux_native.cgroups.v2 import V2Manager
from tests.native.conftest import cgroup2_root


ROOT = cgroup2_root()
pytestmark = pytest.mark.skipif(ROOT is None, reason="no cgroup2 hierarchy mounted")


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(l for l in f if l.startswith("State:")).split()[1]


@contextlib.contextmanager
def _sleeping_child_in(cgroup: str) -> Iterator[tuple[V2Manager, int]]:
    """A manager for a fresh test cgroup and a sleeping child of this test to put in it;
    whatever the test leaves of both is removed afterwards."""
    manager = V2Manager.for_path(f"{cgroup}/{os.getpid()}", root=ROOT)
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    try:
        yield manager, pid
    finally:
        _kill_and_remove(pid, manager.path)


def _kill_and_remove(pid: int, cgroup_path: str) -> None:
    """Whatever a test left: its child process, the cgroup and the cgroup's parent."""
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    for path in (cgroup_path, os.path.dirname(cgroup_path)):
        try:
            os.rmdir(path)
        except OSError:
            pass


def test_v2_apply_freeze_kill_destroy():
    with _sleeping_child_in("/hostrt-v2-test") as (manager, pid):
        manager.apply(pid)
        assert manager.pids() == [pid]
        again = manager_for(manager.describe())
        again.freeze()
        assert again.is_frozen()
        for _ in range(100):
            if _state(pid) in ("D", "T", "t", "S") and "frozen 1" in open(os.path.join(manager.path, "cgroup.events")).read():
                break
            time.sleep(0.01)
        assert "frozen 1" in open(os.path.join(manager.path, "cgroup.events")).read()
        again.thaw()
        assert not again.is_frozen()
        again.destroy()  # cgroup.kill, then rmdir
        os.waitpid(pid, 0)
        assert not os.path.exists(manager.path)


def test_v2_stats_and_oom_watch_without_a_memory_controller():
    """This hybrid host's cgroup2 has no controllers: stats come from the core files
    (cpu.stat) and read the absent ones as None, and there is no OOM watch to register
    (memory.events is a memory-controller file). With the controller (a v2 host) the
    container tests exercise both."""
    with _sleeping_child_in("/hostrt-v2-stats") as (manager, pid):
        manager.apply(pid)
        stats = manager.stats()
        assert isinstance(stats["cpu"]["usage"]["total"], int)
        has_memory = os.path.exists(os.path.join(manager.path, "memory.events"))
        assert (manager.watch_oom() is not None) == has_memory
        if not has_memory:
            assert stats["memory"]["usage"]["usage"] is None and stats["memory"]["oom_kill"] == 0
        manager.destroy()
        os.waitpid(pid, 0)
