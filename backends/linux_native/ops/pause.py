"""`pause` / `resume`: the freezer (v1 freezer.state, v2 cgroup.freeze)."""

from __future__ import annotations

from backends.linux_native import cgroups, state
from backends.linux_native.errors import BadState


def main(command: str, glob, opts) -> int:
    ctr = state.load(glob.root, opts.id)
    status = ctr.status()
    manager = cgroups.manager_for(ctr.data.get("cgroup") or {})
    if command == "pause":
        if status != "running":
            raise BadState(f"container not running: {status}")
        manager.freeze()
    else:
        if status != "paused":
            raise BadState(f"container not paused: {status}")
        manager.thaw()
    return 0
