"""`create`: set up the container up to the user process, which then waits on exec.fifo
for `start`."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)

from backends.linux_native import OCI_VERSION, cgroups, jsonio, spec as speclib, state
from backends.linux_native.errors import RuntimeFailure
from backends.linux_native.log import LOG


def main(command: str, glob, opts) -> int:
    create(glob.root, opts.id, opts.bundle or os.getcwd(), opts)
    return 0


def _resources(spec) -> dict:
    """linux.resources with device rules always there, even when the spec has none (the
    cgroup then allows only the defaults, as runc: cgroups/device_rules.py), and an allow
    for each node linux.devices creates."""
    from backends.linux_native.cgroups.device_rules import node_allows

    resources = dict(spec.resources)
    resources["devices"] = list(resources.get("devices") or ()) + node_allows([(d.type, d.major, d.minor) for d in spec.devices])
    return resources


def _hook_state(ctr, status: str) -> dict:
    return {
        "ociVersion": OCI_VERSION, "id": ctr.id, "status": status, "pid": ctr.pid,
        "bundle": ctr.bundle, "annotations": ctr.data.get("annotations") or {},
    }


def write_pid_file(path: str | None, pid: int) -> None:
    if path:
        path = os.path.abspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)


def create(root: str, container_id: str, bundle: str, opts, reaper: bool = False, console_fd: int | None = None):
    """Create the container; returns (Container, Channel) with init waiting on the FIFO.
    CONSOLE_FD, when given, replaces --console-socket (run's own terminal relay)."""
    from backends.linux_native import process
    from backends.linux_native.init import InitOptions, container_init

    spec = speclib.load(bundle)
    # What the init imports only for some containers is loaded here, by the runtime: in a
    # user namespace the init may not be allowed to read the Python installation.
    if spec.process and spec.process.terminal:
        from backends.linux_native import terminal  # noqa: F401
    if spec.hooks["createContainer"] or spec.hooks["startContainer"]:
        from backends.linux_native import hooks  # noqa: F401
    if spec.process and spec.process.apparmor and not os.path.exists("/sys/kernel/security/apparmor"):
        LOG.info("apparmor is not enabled on this host; apparmorProfile ignored")
    ctr = state.new(root, container_id)
    manager = None
    init_pid = 0
    try:
        fifo = os.path.join(ctr.dir, state.FIFO)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)
        resources = _resources(spec)
        manager = cgroups.create_manager(spec.cgroups_path, container_id, resources)

        def prepare_cgroup() -> None:
            manager.create()
            manager.set(resources)

        if opts.console_socket:
            import socket

            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(opts.console_socket)
            console_fd = sock.detach()
        preserve = int(opts.preserve_fds or 0)
        listen_fds = os.environ.get("LISTEN_FDS", "")
        if listen_fds.isdigit():
            preserve += int(listen_fds)
        dir_fd = os.open(ctr.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        filt = None
        if spec.seccomp:
            from backends.linux_native import seccomp

            filt = seccomp.build(spec.seccomp, root)
        init_opts = InitOptions(dir_fd, console_fd, manager.mount_sources(), bool(opts.no_pivot), preserve, filt)
        os.chdir(spec.bundle)
        chan, init_pid = process.fork_container(
            spec.namespaces,
            {k: v for k, v in spec.namespaces.items() if v},
            manager,
            lambda ch: container_init(spec, init_opts, ch),
            (spec.uid_mappings, spec.gid_mappings),
            reaper=reaper,
            prepare_cgroup=prepare_cgroup,
        )
        os.close(dir_fd)
        if console_fd is not None:
            os.close(console_fd)
        if isinstance(manager, cgroups.NoCgroup):
            manager.started(init_pid)
        found = state.process_start_time(init_pid)
        ctr.data.update(
            pid=init_pid, pid_start=found[1] if found else 0, bundle=spec.bundle, rootfs=spec.root_path,
            config=spec.raw, cgroup=manager.describe(), annotations=spec.annotations,
        )
        chan.answer(jsonio.dumps(_hook_state(ctr, "creating")))
        chan.expect("hooks")
        if spec.hooks["prestart"] or spec.hooks["createRuntime"]:
            from backends.linux_native import hooks

            hook_state = _hook_state(ctr, "created")
            hooks.run(spec.hooks["prestart"], hook_state, "prestart")
            hooks.run(spec.hooks["createRuntime"], hook_state, "createRuntime")
        chan.answer(jsonio.dumps(_hook_state(ctr, "created")))
        chan.expect("ready")
        ctr.save()
        write_pid_file(opts.pid_file, init_pid)
        return ctr, chan
    except BaseException:
        if init_pid:
            from backends.linux_native.process import kill_quietly

            kill_quietly(init_pid)
            _wait_gone(init_pid)
        if manager is not None:
            try:
                manager.destroy()
            except OSError as exc:
                LOG.warning(f"cgroup cleanup: {exc}")
        _remove_dir(ctr.dir)
        raise


def _wait_gone(pid: int) -> None:
    """Reap our child PID after SIGKILL, or wait (pidfd) for a PID we did not fork."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        from backends.linux_native.pidwait import wait_exit

        wait_exit(pid, 1)


def _remove_dir(path: str) -> None:
    try:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except FileNotFoundError:
        pass
