"""Many `hostrt run` at once: every one exits 0 and no record is lost, corrupted or left over."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.engine.conftest import Hostrt

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_100_parallel_runs(hostrt: Hostrt) -> None:
    def one(index: int) -> tuple[int, str]:
        done = subprocess.run([sys.executable, "-m", "hostrt", "run", "--rm", "--network", "none", "busybox", "echo",
                               str(index)], env=hostrt.env, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
        return done.returncode, done.stdout + done.stderr

    before = {p.parent.name for p in (hostrt.root / "containers").glob("*/record.json")}
    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(one, range(100)))
    failures = [(i, out) for i, (code, out) in enumerate(results) if code != 0]
    assert failures == []
    assert [out.strip() for _, out in results] == [str(i) for i in range(100)]
    after = {p.parent.name for p in (hostrt.root / "containers").glob("*/record.json")}
    assert after == before, "every --rm container removed itself"
    for record in (hostrt.root / "containers").glob("*/record.json"):
        json.loads(record.read_text())  # none is half-written


def test_parallel_detached_runs_keep_every_record(hostrt: Hostrt) -> None:
    def one(index: int) -> str:
        return hostrt.ok("run", "-d", "--network", "none", "--name", f"par-{index}", "busybox", "sh", "-c", f"exit {index % 7}").strip()

    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = list(pool.map(one, range(30)))
    assert len(set(ids)) == 30
    for index, container_id in enumerate(ids):
        assert hostrt.ok("wait", container_id).strip() == str(index % 7)
    hostrt.ok("rm", *ids)
