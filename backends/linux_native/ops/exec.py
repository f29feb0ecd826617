"""`exec`: a new process in a running container: join its cgroup and namespaces, then the
same final steps as the init (user, capabilities, no_new_privs, seccomp, execve)."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)

from backends.linux_native import cgroups, jsonio, namespaces, state
from backends.linux_native.errors import BadState, UsageError
from backends.linux_native.spec import Process
from backends.linux_native.tables import NAMESPACES


def build_process(ctr: state.Container, opts) -> dict:
    """--process FILE, or the container's process with args and flag overrides."""
    if opts.process:
        return jsonio.load_file(opts.process)  # type: ignore[return-value]
    if not opts.args:
        raise UsageError("exec needs a command (or --process)")
    raw = dict(ctr.config.get("process") or {})
    raw["args"] = list(opts.args)
    raw["terminal"] = bool(opts.tty)
    raw.pop("consoleSize", None)
    if opts.env:
        raw["env"] = list(raw.get("env") or []) + list(opts.env)
    if opts.cwd:
        raw["cwd"] = opts.cwd
    if opts.user:
        uid, _, gid = opts.user.partition(":")
        raw["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if opts.additional_gids:
        raw.setdefault("user", {})["additionalGids"] = [int(g) for g in opts.additional_gids]
    if opts.no_new_privs:
        raw["noNewPrivileges"] = True
    if opts.cap:
        caps = raw.setdefault("capabilities", {})
        for kind in ("bounding", "effective", "permitted", "ambient"):
            caps[kind] = list(caps.get(kind) or []) + list(opts.cap)
    if opts.apparmor:
        raw["apparmorProfile"] = opts.apparmor
    return raw


def main(command: str, glob, opts) -> int:
    from backends.linux_native import process as proc
    from backends.linux_native.ops.create import write_pid_file

    ctr = state.load(glob.root, opts.id)
    status = ctr.status()
    if status not in ("running", "created"):
        raise BadState(f"cannot exec in a {status} container")
    process = Process(build_process(ctr, opts))
    config_ns = {ns["type"] for ns in (ctr.config.get("linux") or {}).get("namespaces") or ()}
    join = {
        kind: f"/proc/{ctr.pid}/ns/{NAMESPACES[kind][1]}"
        for kind in NAMESPACES
        if kind in config_ns and not namespaces.same_namespace(ctr.pid, kind)
    }
    console_fd = None
    if process.terminal:
        if not opts.console_socket:
            raise UsageError("exec --tty needs --console-socket")
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(opts.console_socket)
        console_fd = sock.detach()
    seccomp_spec = (ctr.config.get("linux") or {}).get("seccomp")
    filt = None
    if seccomp_spec:
        from backends.linux_native import seccomp

        filt = seccomp.build(seccomp_spec, glob.root)
    from backends.linux_native import init, terminal  # noqa: F401 - imported before setns
    preserve = int(opts.preserve_fds or 0)
    manager = cgroups.manager_for(ctr.data.get("cgroup") or {})
    chan, pid = proc.fork_container(
        {}, join, manager, lambda ch: _exec_child(process, filt, console_fd, preserve),
        reaper=not opts.detach,
    )
    if console_fd is not None:
        os.close(console_fd)
    try:
        proc.check_no_error(chan)
    finally:
        chan.close()
    write_pid_file(opts.pid_file, pid)
    if opts.detach:
        return 0
    import _signal

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (1, 2, 3, 10, 12, 15, 28):
        _signal.signal(sig, forward)
    from backends.linux_native.ops.run import _wait

    return _wait(pid)


def _exec_child(process: Process, filt, console_fd: int | None, preserve: int) -> None:
    from backends.linux_native import init, terminal

    init.reset_signals()
    if console_fd is not None:
        os.setsid()
        master, slave, name = terminal.open_pty("/dev/ptmx", "/dev/pts")
        terminal.set_size(master, process.console_size)
        terminal.send_master(console_fd, master, name)
        os.close(master)
        os.close(console_fd)
        terminal.make_controlling(slave)
        os.close(slave)
    init.set_rlimits(process.rlimits)
    init.enter_cwd(process.cwd)
    path = init.resolve_executable(process.args[0], init.env_dict(process.env))
    init.become_process(process, filt, path, preserve)
