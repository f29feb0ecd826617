"""`system prune`: remove stopped containers, then whatever a crash left behind.

A hostrt killed mid-`run` or mid-`rm` can leave a container directory without a record, an
overlay still mounted, runtime state or a cgroup for a container no record names. Each is
found from the container directory or the runtime's state directory and removed; cgroups
only for ids this root knows (other roots share the /hostrt cgroup names).

Other commands run meanwhile. Each container is judged under its lock (never waited for):
one that another command holds — a `run` creating or starting it, an `rm` — is not ours to
touch now, and a record is read again once held, so a container that started after the
first listing is seen running. What has no container directory is a leftover for good,
because a container's directory appears (with its record) before anything else of it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hostrt.engine.containers import ACTIVE, Engine
from hostrt.engine.dir_locks import BUSY, GONE, HELD
from hostrt.engine.ids import ID_PATTERN
from hostrt.engine.record_store import NEW_PREFIX, REMOVED_PREFIX
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


@contextmanager
def _judged(engine: Engine, container_id: str, keep: tuple[str, ...]) -> Iterator[bool]:
    """Whether what `container_id` left may go, decided and acted on under its lock: yes if
    it has no container directory, or nobody else holds it and its record (read now) is
    missing or in none of the `keep` states; never while another command holds it."""
    with engine.records.probe(container_id) as state:
        if state == BUSY:
            yield False
        elif state == GONE:
            yield True
        else:
            record = engine.records.load(container_id)
            yield record is None or engine.refresh(record).status not in keep


_ALL_STATES = ("created", "running", "paused", "exited", "dead")
# A create makes `.new-<id>` and locks it in the next step: an unlocked one that young may be
# a create between the two, not the leftover of one that died.
_CREATE_GRACE_SECONDS = 60.0


def _maybe_being_created(directory: Path) -> bool:
    if not directory.name.startswith(NEW_PREFIX):
        return False
    try:
        return time.time() - directory.stat().st_mtime < _CREATE_GRACE_SECONDS
    except FileNotFoundError:
        return True  # finished (renamed into place) or removed meanwhile: nothing to do


def _unused(engine: Engine) -> Callable[[str], AbstractContextManager[bool]]:
    """Nothing of the container runs (its runtime state, cgroups and forwards may go)."""
    return lambda container_id: _judged(engine, container_id, ACTIVE)


def _unowned(engine: Engine) -> Callable[[str], AbstractContextManager[bool]]:
    """The container has no record (its network may go: a stopped one keeps it for a restart)."""
    return lambda container_id: _judged(engine, container_id, _ALL_STATES)


def prune(engine: Engine) -> PruneReport:
    report = PruneReport()
    records = {r.id: r for r in engine.records.all()}
    ours = _ids_of_this_root(engine, set(records))
    for container_id in records:
        with engine.records.probe(container_id) as state:
            record = engine.records.load(container_id) if state == HELD else None
            if record is not None and engine.refresh(record).status in ("exited", "created", "dead"):
                engine.remove(record, force=True)
                report.containers.append(record.id)

    report.leftovers += network_cleanup.prune(engine.paths.root, engine.paths.run, _unowned(engine))
    from backends.lightvm.ports import prune as prune_forwards  # QEMU forwards a killed hostrt left up

    report.leftovers += prune_forwards(engine.paths.containers, _unused(engine))
    for directory in engine.records.orphans() + engine.records.unfinished():
        if _maybe_being_created(directory):
            continue
        with engine.records.locks.probe(directory) as state:
            if state == HELD:
                unmount_rootfs(directory)
                shutil.rmtree(directory, ignore_errors=True)
                name = directory.name.removeprefix(NEW_PREFIX).removeprefix(REMOVED_PREFIX)
                report.leftovers.append(f"container directory {name[:12]}")

    state_root = engine.runtime.root
    if state_root.is_dir():
        for entry in state_root.iterdir():
            if ID_PATTERN.match(entry.name):
                with _unused(engine)(entry.name) as unused:
                    if unused:
                        engine.runtime.delete(entry.name, force=True)
                        report.leftovers.append(f"runtime state {entry.name[:12]}")

    for container_id in _known_cgroup_ids() & ours:
        with _unused(engine)(container_id) as unused:
            for directory in _cgroup_dirs(container_id) if unused else []:
                try:
                    os.rmdir(directory)
                    report.leftovers.append(f"cgroup {directory}")
                except OSError:
                    pass  # still has processes: the runtime delete above should have killed them
    return report
