"""The expected cost of running in a machine: how warm it is and what its last starts took.

Shown by `hostrt run --explain` (for the machine a decision picks) and `hostrt info` (for
every machine). Reads the machine directory only: no libvirt, no SSH, so both stay fast.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

_STATE_TEXT = {
    "warm": "running, its host agent connected: the next run is a warm start",
    "stopped": "the next run boots it (a cold start)",
    "saved": "stopped with its state saved: the next run restores it (a cold start without the boot)",
    "unknown": "a run record but no host agent: the next run reconnects, or boots it",
    "absent": "not created yet: the next run creates and boots it (a cold start)",
}


class StartCost(BaseModel):
    """Median of the last `samples` measured starts of one kind (None when never measured)."""

    seconds: float | None
    samples: int


class MachineCost(BaseModel):
    name: str
    arch: str | None
    state: str
    boot: StartCost
    resume: StartCost
    cold: StartCost
    warm: StartCost


def machine_cost(machines_root: Path, name: str) -> MachineCost:
    """Read one machine's state and start statistics from its directory."""
    from backends.lightvm.start_stats import KINDS, machine_state, read_stats

    path = machines_root / name
    stats = read_stats(path)
    arch = None
    try:
        import json

        arch = json.loads((path / "machine.json").read_text()).get("arch")
    except (OSError, ValueError):
        pass
    costs = {kind: StartCost(seconds=stats.median(kind), samples=stats.count(kind)) for kind in KINDS}
    return MachineCost(name=name, arch=arch, state=machine_state(path), **costs)


def all_machine_costs(machines_root: Path) -> list[MachineCost]:
    if not machines_root.is_dir():
        return []
    names = sorted(p.name for p in machines_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [machine_cost(machines_root, name) for name in names]


def _one(label: str, cost: StartCost) -> str:
    if cost.seconds is None:
        return f"{label} not measured yet"
    runs = "run" if cost.samples == 1 else "runs"
    return f"{label} {cost.seconds:.1f} s (median of last {cost.samples} {runs})"


def describe(cost: MachineCost) -> list[str]:
    """Two lines: the state, and the expected start, leading with the kind the next run pays."""
    kinds = [("warm start", cost.warm), ("cold start", cost.cold), ("boot to SSH", cost.boot)]
    if cost.state != "warm":
        kinds = [kinds[1], kinds[2], kinds[0]]
    if cost.state == "saved":
        kinds.insert(0, ("resume to SSH", cost.resume))
    elif cost.resume.samples:  # a machine that was never saved has nothing to say about resuming
        kinds.append(("resume to SSH", cost.resume))
    return [f"{cost.state}: {_STATE_TEXT[cost.state]}", "; ".join(_one(label, c) for label, c in kinds)]


def explain_cost(machines_root: Path, host_arch: str, image_arch: str, backend: str) -> list[str]:
    """The `run --explain` lines on expected cost: which machine, how warm, what it took before."""
    if backend != "lightvm":
        return ["machine: none (a native container: no VM to boot)"]
    from backends.lightvm.vm_backend import machine_name

    cost = machine_cost(machines_root, machine_name(host_arch, image_arch))
    state, starts = describe(cost)
    return [f"machine: {cost.name}, {state}", f"expected start: {starts}"]


def note_vm_start(machines_root: Path, machine: str, began_at: float, seconds: float) -> None:
    """Keep one run's start cost: cold when the machine booted after the run began, else warm."""
    import json

    from backends.lightvm.start_stats import record_start

    path = machines_root / machine
    try:
        run = json.loads((path / "run.json").read_text())
    except (OSError, ValueError):
        return  # the machine is gone already: nothing meaningful to keep
    kind = "cold" if float(run.get("started_at", 0)) >= began_at else "warm"
    record_start(path, kind, seconds, run.get("virt_type"))
