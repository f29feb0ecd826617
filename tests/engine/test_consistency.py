"""`run`, `ps`, `rm` and `system prune` at the same time agree on what exists: prune never
takes a container that is being created or started for a crash leftover, a reader never
brings back a container that `rm` removed, and once all are removed nothing of them is
left — no mount, cgroup, network interface, namespace or runtime state."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt

pytestmark = [pytest.mark.root, pytest.mark.slow]


def run_cli(hostrt: Hostrt, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostrt", *args], env=hostrt.env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def traces(hostrt: Hostrt, cid: str) -> list[str]:
    """What the system holds for container `cid`."""
    found = [f"directory {cid[:12]}"] if (hostrt.root / "containers" / cid).exists() else []
    found += [f"mount {m}" for m in (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
              if cid in m]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/hostrt/{cid}")]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"hostrt/{cid}")]
    found += [f"runtime state {cid[:12]}"] if (hostrt.root / "run" / "runtime" / cid).exists() else []
    found += [f"network namespace {cid[:12]}"] if (hostrt.root / "run" / "netns" / cid).exists() else []
    if subprocess.run(["ip", "link", "show", "vh" + cid[:12]], capture_output=True).returncode == 0:
        found.append(f"veth vh{cid[:12]}")
    return found


class Repeatedly:
    """Runs one hostrt command over and over in a thread until stopped; keeps each result."""

    def __init__(self, hostrt: Hostrt, *args: str) -> None:
        self.results: list[subprocess.CompletedProcess[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(hostrt, args))
        self._thread.start()

    def _loop(self, hostrt: Hostrt, args: tuple[str, ...]) -> None:
        while not self._stop.is_set():
            self.results.append(run_cli(hostrt, *args))

    def stop(self) -> list[subprocess.CompletedProcess[str]]:
        self._stop.set()
        self._thread.join()
        return self.results


def failures(results: list[subprocess.CompletedProcess[str]]) -> list[str]:
    return [f"{' '.join(r.args[3:5])} -> {r.returncode}: {r.stderr.strip()[-300:]}" for r in results if r.returncode]


def test_50_parallel_runs_beside_a_prune_loop(hostrt: Hostrt) -> None:
    pruning = Repeatedly(hostrt, "system", "prune", "-f")
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            runs = list(pool.map(lambda i: run_cli(hostrt, "run", "-d", "--name", f"beside-prune-{i}", "busybox",
                                                   "sleep", "600"), range(50)))
    finally:
        prunes = pruning.stop()
    ids = [r.stdout.strip() for r in runs if r.returncode == 0]
    try:
        assert failures(runs) == []
        assert len(prunes) >= 3, "prune ran all along"
        assert failures(prunes) == []
        listed = {c["id"]: c for c in json.loads(hostrt.ok("ps", "--format", "json"))}
        for cid in ids:
            state = json.loads(hostrt.ok("inspect", cid))[0]["State"]
            assert state["Status"] == "running" and Path(f"/proc/{state['Pid']}").exists(), cid
            assert cid in listed
            held = traces(hostrt, cid)
            for kind in ("directory", "mount", "cgroup", "runtime state", "network namespace", "veth"):
                assert any(t.startswith(kind) for t in held), f"{cid[:12]} lost its {kind}: {held}"
    finally:
        with ThreadPoolExecutor(max_workers=5) as pool:
            list(pool.map(lambda part: run_cli(hostrt, "rm", "-f", *part), [ids[i::5] for i in range(5)]))
    hostrt.ok("system", "prune", "-f")
    assert [t for cid in ids for t in traces(hostrt, cid)] == []


def test_ps_never_brings_back_a_removed_container(hostrt: Hostrt) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda i: hostrt.ok("run", "-d", "--network", "none", "busybox", "sleep", "600").strip(),
                            range(24)))
    listing = [Repeatedly(hostrt, "ps", "-a") for _ in range(3)]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            removals = list(pool.map(lambda cid: run_cli(hostrt, "rm", "-f", cid), ids))
    finally:
        readers = [result for loop in listing for result in loop.stop()]
    assert failures(removals) == []
    assert failures(readers) == []
    assert [t for cid in ids for t in traces(hostrt, cid)] == []
    assert not any(cid[:12] in hostrt.ok("ps", "-a") for cid in ids)


def test_prune_spares_a_create_in_progress_and_removes_a_dead_one(hostrt: Hostrt) -> None:
    """A create makes `.new-<id>` and locks it in the next step: an unlocked one younger than the
    grace period may be a create between the two and stays; an older one is the leftover of a
    create that died, and goes."""
    import os
    import time

    containers = hostrt.root / "containers"
    young = containers / (".new-" + "a" * 64)
    dead = containers / (".new-" + "b" * 64)
    for directory in (young, dead):
        directory.mkdir()
        (directory / "record.json").write_text("{}")
    old = time.time() - 3600
    os.utime(dead, (old, old))
    try:
        hostrt.ok("system", "prune", "-f")
        assert young.exists(), "prune took a container directory that a create may still be filling"
        assert not dead.exists(), "a dead create's directory was left behind"
    finally:
        subprocess.run(["rm", "-rf", str(young), str(dead)], check=False)
