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
    init_fd = _init_pidfd(ctr)
    targets = set(manager.pids())
    if init_fd is not None:
        targets.add(ctr.pid)
    for pid in targets:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    if init_fd is not None:
        from backends.linux_native.pidwait import wait_fd  # select: not on a stopped delete's path

        try:
            wait_fd(init_fd, 10)  # the init first: with it, a PID namespace dies whole
        finally:
            os.close(init_fd)
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


def _init_pidfd(ctr: state.Container) -> int | None:
    """A pidfd of the running init, opened before any signal: once SIGKILL frees its pid,
    another process (or a thread, which pidfd_open refuses with EINVAL) may take that number."""
    try:
        fd = os.pidfd_open(ctr.pid)
    except OSError:
        return None
    if not ctr.alive():  # the pid already named another process when the fd was opened
        os.close(fd)
        return None
    return fd


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
