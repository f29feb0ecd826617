"""`start`: read exec.fifo, which releases the waiting init into the user process."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)

from backends.linux_native import state
from backends.linux_native.errors import BadState, RuntimeFailure
from backends.linux_native.log import LOG


def main(command: str, glob, opts) -> int:
    start(state.load(glob.root, opts.id))
    return 0


def start(ctr: state.Container) -> None:
    status = ctr.status()
    if status != "created":
        raise BadState(f"cannot start a container that is {status}" if status != "running" else "cannot start an already running container")
    poststart = bool((ctr.config.get("hooks") or {}).get("poststart"))
    release(ctr, wait_exec=poststart)
    if not ctr.config.get("process"):
        raise RuntimeFailure("config.json has no process: nothing to start")
    run_poststart(ctr)


def release(ctr: state.Container, wait_exec: bool = False) -> None:
    """Open the FIFO for reading and wait for init's byte. A FIFO that never had a writer
    does not report POLLHUP, so poll() waits exactly until init opened and wrote, or
    (the init's pidfd) until it died first. With WAIT_EXEC also wait for EOF: init's
    close-on-exec copy goes away at execve, which poststart hooks must follow (without
    them, as runc, return at once)."""
    import select

    path = os.path.join(ctr.dir, state.FIFO)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    pidfd = -1
    released = False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        timeout = None
        try:
            pidfd = os.pidfd_open(ctr.pid)
            poller.register(pidfd, select.POLLIN)
        except OSError:  # already gone, or no pidfds (kernel < 5.3): look now and then
            timeout = 200
        while True:
            ready = {f for f, _ in poller.poll(timeout)}
            if fd in ready:
                if os.read(fd, 16):
                    if not released:
                        released = True
                        os.unlink(path)
                    if not wait_exec:
                        break
                    continue
                # EOF: init's close-on-exec copy is gone, the user process runs (or init died).
                break
            if pidfd in ready or not ctr.alive():
                break  # the init exited without writing
    finally:
        os.close(fd)
        if pidfd >= 0:
            os.close(pidfd)
    if not released:
        raise RuntimeFailure("container init exited before start")


def run_poststart(ctr: state.Container) -> None:
    raw_hooks = (ctr.config.get("hooks") or {}).get("poststart")
    if not raw_hooks:
        return
    from backends.linux_native import hooks, jsonio, spec as speclib

    st = ctr.oci_state()
    # The hook reports the start that just happened, even if the process already exited.
    st.update(status="running", pid=ctr.pid)
    for raw in raw_hooks:
        try:
            hooks.run_one(speclib.Hook(raw), jsonio.dumps(st).encode(), "poststart")
        except RuntimeFailure as exc:
            LOG.warning(str(exc))
