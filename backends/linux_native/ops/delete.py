"""`delete [--force]`: kill what is left (created or forced), remove the cgroup, run the
poststop hooks, forget the container."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import time

from backends.linux_native import cgroups, state
from backends.linux_native.errors import BadState, ContainerNotFound, RuntimeFailure
from backends.linux_native.log import LOG


def main(command: str, glob, opts) -> int:
    try:
        ctr = state.load(glob.root, opts.id)
    except ContainerNotFound:
        if opts.force:
            return 0
        raise
    delete(ctr, bool(opts.force))
    return 0


def kill_all(ctr: state.Container, manager: cgroups.Manager) -> None:
    """SIGKILL the init and everything in its cgroup, thawing first (a frozen task cannot
    die), and wait until they are gone."""
    if manager.is_frozen():
        manager.thaw()
    targets = set(manager.pids())
    if ctr.alive():
        targets.add(ctr.pid)
    for pid in targets:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    if ctr.alive():
        from backends.linux_native.pidwait import wait_exit  # select: not on a stopped delete's path

        wait_exit(ctr.pid, 10)  # the init first: with it, a PID namespace dies whole
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.waitpid(-1, os.WNOHANG)  # reap our own children (run's subreaper case)
        except ChildProcessError:
            pass
        if not ctr.alive() and not manager.pids():
            return
        time.sleep(0.002)  # stragglers outside the init's PID namespace (no pidfd for a set)
    LOG.warning(f"processes of {ctr.id} still present after SIGKILL")


def delete(ctr: state.Container, force: bool) -> None:
    status = ctr.status()
    manager = cgroups.manager_for(ctr.data.get("cgroup") or {})
    if status in ("running", "paused") and not force:
        raise BadState(f"cannot delete container {ctr.id} that is not stopped: {status}")
    if status != "stopped":
        kill_all(ctr, manager)
    try:
        manager.destroy()
    except OSError as exc:
        LOG.warning(f"removing cgroup of {ctr.id}: {exc}")
    poststop = (ctr.config.get("hooks") or {}).get("poststop")
    if poststop:
        from backends.linux_native import hooks, jsonio, spec as speclib

        payload = jsonio.dumps(ctr.oci_state()).encode()
        for raw in poststop:
            try:
                hooks.run_one(speclib.Hook(raw), payload, "poststop")
            except RuntimeFailure as exc:
                LOG.warning(str(exc))
    for name in os.listdir(ctr.dir):
        os.unlink(os.path.join(ctr.dir, name))
    os.rmdir(ctr.dir)
