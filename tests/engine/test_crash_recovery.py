"""hostrt SIGKILLed at each step that changes the system: `ps -a` still tells the truth and
`system prune` leaves no record, mount, runtime state or cgroup behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt

pytestmark = pytest.mark.root


def container_id(hostrt: Hostrt, name: str) -> str:
    return next(c["id"] for c in json.loads(hostrt.ok("ps", "-a", "--format", "json")) if c["name"] == name)


def leftovers(hostrt: Hostrt, cid: str) -> list[str]:
    """Everything on the system that still belongs to container `cid`."""
    directory = hostrt.root / "containers" / cid
    found = [f"directory {directory}"] if directory.exists() else []
    found += [m for m in (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()) if cid in m]
    found += [f"runtime state {cid[:12]}"] if (hostrt.root / "run" / "runtime" / cid).exists() else []
    found += [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/hostrt/{cid}")]
    return found


def crash_run(hostrt: Hostrt, point: str, name: str) -> int:
    env = {**hostrt.env, "HOSTRT_FAILPOINT": point}
    done = subprocess.run([sys.executable, "-m", "hostrt", "run", "--name", name, "busybox", "sleep", "30"],
                          env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return done.returncode


@pytest.mark.parametrize("point", ["after-record", "after-mount", "after-create"])
def test_crash_before_the_container_runs(hostrt: Hostrt, point: str) -> None:
    name = f"crash-{point}"
    assert crash_run(hostrt, point, name) == -9
    listing = hostrt("ps", "-a")
    assert listing.returncode == 0, listing.stderr
    assert "Created" in next(line for line in listing.stdout.splitlines() if line.endswith(name))
    cid = container_id(hostrt, name)
    hostrt.ok("system", "prune", "-f")
    assert leftovers(hostrt, cid) == []
    assert name not in hostrt.ok("ps", "-a")


def test_crash_while_running_keeps_the_truth(hostrt: Hostrt) -> None:
    name = "crash-running"
    assert crash_run(hostrt, "after-start", name) == -9
    cid = container_id(hostrt, name)
    info = json.loads(hostrt.ok("inspect", name))[0]["State"]
    assert info["Running"] is True, "the container outlives the hostrt that started it"
    assert os.path.exists(f"/proc/{info['Pid']}")
    hostrt.ok("system", "prune", "-f")
    assert name in hostrt.ok("ps"), "prune keeps running containers"
    hostrt.ok("rm", "-f", name)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{info['Pid']}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(hostrt, cid) == []


def test_crash_during_rm(hostrt: Hostrt) -> None:
    name = "crash-rm"
    cid = hostrt.ok("create", "--name", name, "busybox", "true").strip()
    env = {**hostrt.env, "HOSTRT_FAILPOINT": "rm-after-delete"}
    done = subprocess.run([sys.executable, "-m", "hostrt", "rm", name], env=env, capture_output=True, timeout=60)
    assert done.returncode == -9
    assert hostrt("ps", "-a").returncode == 0
    hostrt.ok("system", "prune", "-f")
    assert leftovers(hostrt, cid) == []


def test_prune_leaves_another_roots_cgroups_alone(hostrt: Hostrt) -> None:
    """Cgroups are /hostrt/<id> for every root: one this root never knew is not its leftover."""
    foreign = "f" * 64
    made = []
    for parent in Path("/sys/fs/cgroup").glob("*/hostrt"):
        try:
            (parent / foreign).mkdir()
            made.append(parent / foreign)
        except OSError:
            pass
    if not made:
        pytest.skip("no writable hostrt cgroup parent on this host")
    try:
        hostrt.ok("system", "prune", "-f")
        assert all(path.is_dir() for path in made), "another root's empty cgroup was removed"
    finally:
        for path in made:
            path.rmdir()
