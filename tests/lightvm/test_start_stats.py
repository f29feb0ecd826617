"""Per-machine start costs: kept in the machine directory, trimmed, and read back as `run --explain`
and `hostrt info` show them (the real files of a machine directory, no libvirt)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backends.lightvm.start_stats import KEEP, STATS_NAME, machine_state, read_stats, record_start
from hostrt.machine_costs import all_machine_costs, describe, machine_cost

pytestmark = pytest.mark.portable


def _machine(root: Path, name: str = "default", arch: str = "amd64") -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "machine.json").write_text(json.dumps({"name": name, "arch": arch}))
    return path


def test_samples_are_kept_trimmed_and_summarised(tmp_path: Path) -> None:
    path = _machine(tmp_path)
    for seconds in range(1, KEEP + 3):
        record_start(path, "warm", float(seconds), "qemu")
    record_start(path, "cold", 30.0)
    stats = read_stats(path)
    assert [s.seconds for s in stats.warm] == [float(s) for s in range(3, KEEP + 3)], "oldest samples dropped"
    assert stats.median("cold") == 30.0 and stats.median("boot") is None
    assert json.loads((path / STATS_NAME).read_text())["warm"][-1]["virt_type"] == "qemu"
    assert not [p for p in path.iterdir() if p.name.startswith(f".{STATS_NAME}.")], "no temp file left behind"


def test_state_is_read_from_the_machine_files(tmp_path: Path) -> None:
    path = _machine(tmp_path)
    assert machine_state(tmp_path / "other") == "absent"
    assert machine_state(path) == "stopped"
    (path / "saved.json").write_text("{}")
    assert machine_state(path) == "saved", "stopped with its state saved: the next start restores it"
    (path / "run.json").write_text("{}")
    (path / "agent.pid").write_text("999999999")
    assert machine_state(path) == "unknown"
    (path / "agent.pid").write_text(str(os.getpid()))
    assert machine_state(path) == "warm"


def test_descriptions_lead_with_the_cost_the_next_run_pays(tmp_path: Path) -> None:
    path = _machine(tmp_path, "default-arm64", "arm64")
    record_start(path, "cold", 50.0)
    record_start(path, "cold", 70.0)
    state, starts = describe(machine_cost(tmp_path, "default-arm64"))
    assert state.startswith("stopped: the next run boots it")
    assert starts.startswith("cold start 60.0 s (median of last 2 runs)") and "warm start not measured yet" in starts
    (path / "saved.json").write_text("{}")
    record_start(path, "resume", 3.0)
    state, starts = describe(machine_cost(tmp_path, "default-arm64"))
    assert state.startswith("saved: ") and starts.startswith("resume to SSH 3.0 s")
    (path / "saved.json").unlink()
    (path / "run.json").write_text("{}")
    (path / "agent.pid").write_text(str(os.getpid()))
    record_start(path, "warm", 4.0)
    _, starts = describe(machine_cost(tmp_path, "default-arm64"))
    assert starts.startswith("warm start 4.0 s (median of last 1 run)")
    assert [(m.name, m.arch) for m in all_machine_costs(tmp_path)] == [("default-arm64", "arm64")]


def test_info_lists_machines_with_their_costs(tmp_path: Path) -> None:
    path = _machine(tmp_path / "machines")
    record_start(path, "boot", 12.5)
    env = {**os.environ, "HOSTRT_ROOT": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "hostrt", "info", "--format", "json"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    machines = json.loads(done.stdout)["machines"]
    assert [(m["name"], m["state"], m["boot"]) for m in machines] == [("default", "stopped", {"seconds": 12.5, "samples": 1})]
    text = subprocess.run([sys.executable, "-m", "hostrt", "info"], env=env, capture_output=True, text=True, timeout=60)
    assert "default (amd64): stopped" in text.stdout and "boot to SSH 12.5 s" in text.stdout
