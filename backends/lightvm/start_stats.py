"""Measured start costs of one machine, kept in its directory (`starts.json`) across runs.

Three kinds of sample, the last few of each:
  boot  - the domain booted until its guest accepted SSH (`machine start`, or a run that booted it);
  resume - the same for a machine restored from the state `machine stop` saved;
  cold  - a `run` that had to boot the machine: from the command's start until the container
          was created in the guest (boot, runtime and layer shipping, bundle);
  warm  - the same on a machine that was already running.
`run --explain` and `hostrt info` show their medians as the expected cost of the next run.
Standard library and pydantic only: `hostrt info` reads these without importing libvirt.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from backends.lightvm.machine_dir import write_atomic
from hostrt.locks import file_lock

StartKind = Literal["boot", "resume", "cold", "warm"]
KINDS: tuple[StartKind, ...] = ("boot", "resume", "cold", "warm")
STATS_NAME = "starts.json"
KEEP = 10  # samples per kind: enough for a median, small enough to follow a changed host


class StartSample(BaseModel):
    seconds: float
    at: float  # when it was measured (epoch seconds)
    virt_type: str | None = None


class StartStats(BaseModel):
    """The last samples of each kind, oldest first."""

    boot: list[StartSample] = Field(default_factory=list)
    resume: list[StartSample] = Field(default_factory=list)
    cold: list[StartSample] = Field(default_factory=list)
    warm: list[StartSample] = Field(default_factory=list)

    def median(self, kind: StartKind) -> float | None:
        samples = getattr(self, kind)
        return statistics.median(s.seconds for s in samples) if samples else None

    def count(self, kind: StartKind) -> int:
        return len(getattr(self, kind))


def read_stats(machine_path: Path) -> StartStats:
    """The machine's samples; none when it has never started or the file is unreadable."""
    try:
        return StartStats.model_validate_json((machine_path / STATS_NAME).read_text())
    except (OSError, ValueError):
        return StartStats()


def record_start(machine_path: Path, kind: StartKind, seconds: float, virt_type: str | None = None) -> None:
    """Append one sample (read-modify-write under the machine's lock, then an atomic rename)."""
    if not machine_path.is_dir():
        return  # the machine was removed meanwhile: nothing to keep
    with file_lock(machine_path / ".starts.lock"):
        stats = read_stats(machine_path)
        samples = [*getattr(stats, kind), StartSample(seconds=round(seconds, 3), at=time.time(), virt_type=virt_type)]
        setattr(stats, kind, samples[-KEEP:])
        write_atomic(machine_path / STATS_NAME, stats.model_dump_json(indent=2).encode(), 0o644)


MachineState = Literal["warm", "saved", "stopped", "unknown", "absent"]


def machine_state(machine_path: Path) -> MachineState:
    """How warm the machine is, read from its files only (no libvirt, no SSH):
    warm when it has a run record and its host agent (alive only while connected) runs;
    unknown when the record is there but the agent is not (the next run reconnects, or boots)."""
    if not (machine_path / "machine.json").exists():
        return "absent"
    if not (machine_path / "run.json").exists():
        return "saved" if (machine_path / "saved.json").exists() else "stopped"
    from hostrt.pids import pid_alive

    try:
        alive = pid_alive(int((machine_path / "agent.pid").read_text()))
    except (OSError, ValueError):
        return "unknown"
    return "warm" if alive else "unknown"
