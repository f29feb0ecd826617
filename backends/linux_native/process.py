"""The fork dance, isolated from policy. Usually one fork: the runtime -> init or exec
process, the runtime holding the PID namespace for the fork and moving the child into
its cgroup. With user or time namespaces: runtime -> intermediate (joins the cgroup and
namespaces, unshares new ones) -> init or exec process. The runtime stays in the host's
namespaces and answers the children over a Channel."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)

from backends.linux_native import namespaces, syscalls
from backends.linux_native.channel import Channel
from backends.linux_native.errors import RuntimeFailure

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


def describe(exc: BaseException) -> str:
    """One readable line for an error, OSErrors without Python's [Errno N] noise."""
    if isinstance(exc, OSError) and exc.strerror:
        name = str(exc.filename) if exc.filename is not None else ""
        return exc.strerror if name in exc.strerror else f"{exc.strerror}: {name}"
    return str(exc)


def _child_failed(chan: Channel, exc: BaseException) -> None:
    """Report from a child and leave without running any parent cleanup."""
    try:
        msg = describe(exc)
        chan.send("error", msg or exc.__class__.__name__)
    finally:
        os._exit(1)


def _intermediate(chan: Channel, join: dict[str, str], new_flags: int, new_user: bool, cgroup, child) -> None:
    try:
        chan.child_side()
        if cgroup is not None:
            cgroup.apply(os.getpid())
        namespaces.join(join)
        if new_user:
            syscalls.unshare(namespaces.CLONE_NEWUSER)
            chan.send("userns")
            chan.wait()
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        if new_flags:
            syscalls.unshare(new_flags)
        if new_flags & namespaces.CLONE_NEWNET:
            from backends.linux_native import loopback

            loopback.bring_up()
        pid = os.fork()
        if pid == 0:
            try:
                child(chan)
            except BaseException as exc:  # noqa: BLE001 - report, never return into the runtime
                _child_failed(chan, exc)
            os._exit(1)
        chan.send("pid", str(pid))
    except BaseException as exc:  # noqa: BLE001
        _child_failed(chan, exc)
    os._exit(0)


def fork_container(spec_namespaces: dict[str, str], join: dict[str, str], cgroup, child, id_maps=None, reaper: bool = False,
                   prepare_cgroup=None) -> tuple[Channel, int]:
    """Start the container process; returns the channel and its host PID. CHILD runs in
    the new namespaces and must not return. PREPARE_CGROUP (create the cgroup, write the
    limits) runs before the process is moved in; on the one-fork path while the child
    unshares its namespaces."""
    from backends.linux_native import sealed_exe

    sealed_exe.require()
    _require_own_proc()
    syscalls.prctl(PR_SET_DUMPABLE, 0)
    if reaper:
        syscalls.prctl(PR_SET_CHILD_SUBREAPER, 1)
    new_user = "user" in spec_namespaces and not spec_namespaces["user"] and "user" not in join
    new_flags = namespaces.new_flags({k: v for k, v in spec_namespaces.items() if k not in join})
    if new_flags & namespaces.CLONE_NEWNET:
        from backends.linux_native import loopback  # noqa: F401 - now: after the fork a user namespace may not read it
    # Rootless, the runtime could not setns back into its own PID namespace (the host's user
    # namespace owns it): the intermediate unshares it and leaves.
    if new_user or "user" in join or "time" in join or "time" in spec_namespaces or namespaces.rootless():
        if prepare_cgroup is not None:
            prepare_cgroup()
        return _fork_through_intermediate(join, new_flags, new_user, cgroup, child, id_maps)
    return _fork_direct(join, new_flags, cgroup, child, prepare_cgroup)


def _require_own_proc() -> None:
    """Refuse when /proc belongs to another PID namespace than this process's (`unshare -p`
    without --mount-proc): the container's pid would be looked up there, as another process."""
    try:
        own = os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        own = False
    if not own:
        raise RuntimeFailure("/proc is not this PID namespace's: mount one for it (unshare --pid --fork --mount-proc)")


def _fork_direct(join: dict[str, str], new_flags: int, cgroup, child, prepare_cgroup=None) -> tuple[Channel, int]:
    """One fork, no intermediate process: the runtime sets its PID namespace for children
    (new or joined) around the fork, the child enters the other namespaces itself while
    the runtime moves it into its cgroup, then waits for the go-ahead, as nothing of the
    container may happen outside the cgroup. A new cgroup namespace comes after the move,
    so that its root is the container's cgroup."""
    pid_flag = namespaces.CLONE_NEWPID
    cgroup_flag = namespaces.CLONE_NEWCGROUP
    own_pid_ns = -1
    if "pid" in join or new_flags & pid_flag:
        own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    chan = Channel()
    try:
        if "pid" in join:
            namespaces.join({"pid": join["pid"]})
        elif new_flags & pid_flag:
            syscalls.unshare(pid_flag)
        pid = os.fork()
        if pid == 0:
            try:
                chan.child_side()
                if own_pid_ns >= 0:
                    os.close(own_pid_ns)
                namespaces.join({k: v for k, v in join.items() if k != "pid"})
                if new_flags & ~(pid_flag | cgroup_flag):
                    syscalls.unshare(new_flags & ~(pid_flag | cgroup_flag))
                if new_flags & namespaces.CLONE_NEWNET:
                    from backends.linux_native import loopback

                    loopback.bring_up()
                chan.wait()  # in the cgroup now
                if new_flags & cgroup_flag:
                    syscalls.unshare(cgroup_flag)
                child(chan)
            except BaseException as exc:  # noqa: BLE001 - report, never return into the runtime
                _child_failed(chan, exc)
            os._exit(1)
    finally:
        if own_pid_ns >= 0:
            syscalls.setns(own_pid_ns, pid_flag)  # later forks (hooks) stay in the host's
            os.close(own_pid_ns)
    chan.parent_side()
    try:
        if prepare_cgroup is not None:
            prepare_cgroup()
        if cgroup is not None:
            cgroup.apply(pid)
        chan.answer("go")
    except BaseException:
        kill_quietly(pid)
        os.waitpid(pid, 0)
        chan.close()
        raise
    return chan, pid


def _fork_through_intermediate(join: dict[str, str], new_flags: int, new_user: bool, cgroup, child, id_maps) -> tuple[Channel, int]:
    """runtime -> intermediate -> container process, for user and time namespaces: a user
    namespace must own the PID namespace created after it, and joining a time namespace
    wants a single-threaded caller. The intermediate is reaped before returning."""
    chan = Channel()
    pid = os.fork()
    if pid == 0:
        _intermediate(chan, join, new_flags, new_user, cgroup, child)
    chan.parent_side()
    try:
        while True:
            kind, payload = chan.expect("userns", "pid")
            if kind == "userns":
                uid_maps, gid_maps = id_maps or ([], [])
                namespaces.write_id_maps(pid, uid_maps, gid_maps)
                chan.answer()
                continue
            child_pid = int(payload)
            break
    except BaseException:
        os.waitpid(pid, 0)
        chan.close()
        raise
    os.waitpid(pid, 0)
    return chan, child_pid


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass


def wait_status_code(status: int) -> int:
    """Exit code as a shell reports it: 128+N for death by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def check_no_error(chan: Channel) -> None:
    kind, payload = chan.recv()
    if kind == "error":
        raise RuntimeFailure(payload)
