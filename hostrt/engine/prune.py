"""`system prune`: remove stopped containers, then whatever a crash left behind.

A hostrt killed mid-`run` or mid-`rm` can leave a container directory without a record, an
overlay still mounted, runtime state or a cgroup for a container no record names. Each is
found from the container directory or the runtime's state directory and removed; cgroups
only for ids this root knows (other roots share the /hostrt cgroup names).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hostrt.engine.containers import Engine
from hostrt.engine.ids import ID_PATTERN
from hostrt.engine.snapshot import unmount_rootfs
from hostrt.network import cleanup as network_cleanup

_CGROUP_PARENTS = ("/sys/fs/cgroup/{controller}/hostrt", "/sys/fs/cgroup/hostrt")


@dataclass
class PruneReport:
    containers: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)


def _cgroup_dirs(container_id: str) -> list[Path]:
    roots = [Path("/sys/fs/cgroup/hostrt")]
    base = Path("/sys/fs/cgroup")
    if base.is_dir():
        roots += [entry / "hostrt" for entry in base.iterdir() if entry.is_dir() and not entry.is_symlink()]
    return [root / container_id for root in roots if (root / container_id).is_dir()]


def _known_cgroup_ids() -> set[str]:
    found: set[str] = set()
    base = Path("/sys/fs/cgroup")
    roots = [base / "hostrt"] + ([entry / "hostrt" for entry in base.iterdir() if entry.is_dir()] if base.is_dir() else [])
    for root in roots:
        if root.is_dir():
            found |= {child.name for child in root.iterdir() if ID_PATTERN.match(child.name)}
    return found


def _ids_of_this_root(engine: Engine, record_ids: set[str]) -> set[str]:
    """Every container id this root has a trace of: records, directories, runtime state.

    Cgroups are named /hostrt/<id> whatever the root, so another root's cgroup (say, one its
    runtime just created and has not moved a process into yet) looks exactly like a leftover;
    only ids this root knows are its to remove."""
    known = set(record_ids) | {directory.name for directory in engine.records.orphans()}
    if engine.runtime.root.is_dir():
        known |= {entry.name for entry in engine.runtime.root.iterdir() if ID_PATTERN.match(entry.name)}
    return known


def prune(engine: Engine) -> PruneReport:
    report = PruneReport()
    records = {r.id: r for r in engine.list(include_stopped=True)}
    ours = _ids_of_this_root(engine, set(records))
    for record in records.values():
        if record.status in ("exited", "created", "dead"):
            engine.remove(record.id, force=True)
            report.containers.append(record.id)
    live = {cid for cid, r in records.items() if r.status in ("running", "paused")}

    report.leftovers += network_cleanup.prune(engine.paths.root, engine.paths.run)
    from backends.lightvm.ports import prune as prune_forwards  # QEMU forwards a killed hostrt left up

    report.leftovers += prune_forwards(engine.paths.containers, live)
    for directory in engine.records.orphans():
        unmount_rootfs(directory)
        shutil.rmtree(directory, ignore_errors=True)
        report.leftovers.append(f"container directory {directory.name[:12]}")

    state_root = engine.runtime.root
    if state_root.is_dir():
        for entry in state_root.iterdir():
            if ID_PATTERN.match(entry.name) and entry.name not in live:
                engine.runtime.delete(entry.name, force=True)
                report.leftovers.append(f"runtime state {entry.name[:12]}")

    for container_id in (_known_cgroup_ids() & ours) - live:
        for directory in _cgroup_dirs(container_id):
            try:
                os.rmdir(directory)
                report.leftovers.append(f"cgroup {directory}")
            except OSError:
                pass  # still has processes: the runtime delete above should have killed them
    return report
