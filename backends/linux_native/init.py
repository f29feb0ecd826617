"""What runs inside the container: the init's setup from mounts to execve, and the final
steps every container process takes (rlimits, user, capabilities, no_new_privs, seccomp,
closing the runtime's fds, execve). Policy is here; the fork dance is in process.py."""

from __future__ import annotations

import _signal
from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import resource

from backends.linux_native import capabilities, inroot, namespaces, rootfs, syscalls
from backends.linux_native.errors import RuntimeFailure
from backends.linux_native.log import LOG

PR_SET_NO_NEW_PRIVS = 38
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SIGPIPE, _SIGXFSZ = 13, 25


def env_dict(env: list[str]) -> dict[str, str]:
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)


def resolve_executable(arg0: str, env: dict[str, str]) -> str:
    """arg0 looked up in the container's PATH now, so a typo fails `create`, not `start`."""
    if "/" in arg0:
        candidates = [arg0]
    else:
        candidates = [os.path.join(d or ".", arg0) for d in env.get("PATH", DEFAULT_PATH).split(":")]
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    if "/" in arg0:
        if os.path.exists(arg0):
            raise RuntimeFailure(f'exec: "{arg0}": permission denied')
        raise RuntimeFailure(f'exec: "{arg0}": stat {arg0}: no such file or directory')
    raise RuntimeFailure(f'exec: "{arg0}": executable file not found in $PATH')


def enter_cwd(cwd: str) -> None:
    """Change into process.cwd, made where missing (as Docker does for WorkingDir). Until
    execve the process holds the runtime's descriptors, some of them host directories: cwd is
    resolved inside the root with /proc magic links refused (inroot.py), then proven
    reachable from the root, as a cwd outside it is how a container walks to its host
    (runc's CVE-2024-21626)."""
    try:
        fd = inroot.mkdirs_in_root("/", cwd)
    except OSError as exc:
        raise RuntimeFailure(f"cwd {cwd}: {exc.strerror}") from None
    try:
        os.fchdir(fd)
    finally:
        os.close(fd)
    try:
        os.getcwd()  # glibc answers ENOENT for a directory not below this process's root
    except FileNotFoundError:
        raise RuntimeFailure(f"cwd {cwd}: outside the container's root") from None


def set_rlimits(rlimits: list[tuple[str, int, int]]) -> None:
    from backends.linux_native.tables import RLIMITS

    for name, soft, hard in rlimits:
        if name not in RLIMITS:
            raise RuntimeFailure(f"unknown rlimit {name}")
        try:
            resource.setrlimit(RLIMITS[name], (soft, hard))
        except (ValueError, OSError) as exc:
            raise RuntimeFailure(f"setrlimit {name} {soft}/{hard}: {exc}") from None


def reset_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; ignored signals survive execve, so give the
    container the defaults it expects."""
    for sig in (_SIGPIPE, _SIGXFSZ):
        _signal.signal(sig, _signal.SIG_DFL)


def become_process(process, filt, path: str, preserve_fds: int) -> None:
    """The last steps of every container process, then execve. Never returns. FILT is a
    seccomp filter built before the fork (libseccomp cannot be loaded from inside the
    container's root)."""
    user = process.user
    caps = process.capabilities
    if user.umask is not None:
        os.umask(user.umask)
    if caps is not None:
        capabilities.drop_bounding(caps)
    if filt is not None:
        if not process.no_new_privileges:
            # Without no_new_privs the filter needs CAP_SYS_ADMIN: load it while we have it.
            filt.load()
            filt = None
    capabilities.change_user(user.uid, user.gid, user.additional_gids, keep_caps=caps is not None)
    if caps is not None:
        capabilities.apply_sets(caps)
    if process.no_new_privileges:
        syscalls.prctl(PR_SET_NO_NEW_PRIVS, 1)
    if process.apparmor:
        _apparmor(process.apparmor)
    if process.selinux:
        LOG.info(f"selinuxLabel {process.selinux!r} ignored: SELinux is not enabled on this host")
    if filt is not None:
        filt.load()
    syscalls.close_range_cloexec(3 + preserve_fds)
    os.execve(path, process.args, env_dict(process.env))


def _apparmor(profile: str) -> None:
    attr = "/proc/self/attr/apparmor/exec"
    if not os.path.exists("/sys/kernel/security/apparmor") or not os.path.exists(attr):
        LOG.info(f"apparmorProfile {profile!r} ignored: AppArmor is not enabled on this host")
        return
    with open(attr, "w") as f:
        f.write(f"exec {profile}")


class _NoProcess:
    terminal = False
    oom_score_adj = None


_NO_PROCESS = _NoProcess()


class InitOptions:
    """What the parent hands its init across fork."""

    __slots__ = ("state_dir_fd", "console_fd", "cgroup_sources", "no_pivot", "preserve_fds", "seccomp")

    def __init__(self, state_dir_fd: int, console_fd: int | None, cgroup_sources: list, no_pivot: bool, preserve_fds: int, seccomp=None) -> None:
        self.seccomp = seccomp
        self.state_dir_fd = state_dir_fd
        self.console_fd = console_fd
        self.cgroup_sources = cgroup_sources
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds


def container_init(spec, opts: InitOptions, chan) -> None:
    """PID 1 of the container, from the parent's go-ahead to execve."""
    state_json = chan.wait()  # the parent knows our host pid now
    os.setsid()
    reset_signals()
    process = spec.process or _NO_PROCESS
    # Modules only some containers need (the runtime imported them before the fork).
    if process.terminal:
        from backends.linux_native import terminal
    if spec.hooks["createContainer"] or spec.hooks["startContainer"]:
        from backends.linux_native import hooks, jsonio
    # Rootless (the runtime itself in an ordinary user's user namespace) is a user namespace too.
    in_userns = "user" in spec.namespaces or namespaces.rootless()
    if process.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(process.oom_score_adj))
    has_mntns = "mount" in spec.namespaces
    if has_mntns:
        rootfs.prepare(spec, opts.cgroup_sources, in_userns)
    slave = None
    if process.terminal:
        slave = _console(spec, opts)
    chan.send("hooks")
    state_json = chan.wait()
    if spec.hooks["createContainer"]:
        hooks.run(spec.hooks["createContainer"], jsonio.loads(state_json), "createContainer")
    if has_mntns:
        rootfs.pivot(spec.root_path, opts.no_pivot, spec.rootfs_propagation)
    else:
        os.chdir(spec.root_path)
        os.chroot(".")
    if spec.sysctl:
        rootfs.write_sysctls(spec.sysctl)
    if has_mntns:
        rootfs.mask(spec.masked_paths)
        rootfs.readonly(spec.readonly_paths)
        if spec.root_readonly:
            rootfs.readonly_root()
    if spec.hostname is not None and "uts" in spec.namespaces:
        syscalls.sethostname(spec.hostname)
    if spec.domainname is not None and "uts" in spec.namespaces:
        syscalls.setdomainname(spec.domainname)
    if slave is not None:
        terminal.make_controlling(slave)
        os.close(slave)
    if spec.process is None:
        # Allowed by the spec: `start` will refuse it; until then hold the created state.
        chan.send("ready")
        os.open("exec.fifo", os.O_WRONLY | os.O_CLOEXEC, dir_fd=opts.state_dir_fd)
        os._exit(0)
    set_rlimits(process.rlimits)
    enter_cwd(process.cwd)
    path = resolve_executable(process.args[0], env_dict(process.env))
    chan.send("ready")
    # Wait for `start`: opening the FIFO for writing blocks until start opens it to read.
    # The fd stays open (close-on-exec), so `start` sees EOF exactly when execve succeeded.
    fifo = os.open("exec.fifo", os.O_WRONLY | os.O_CLOEXEC, dir_fd=opts.state_dir_fd)
    os.write(fifo, b"0")
    os.close(opts.state_dir_fd)
    if spec.hooks["startContainer"]:
        hooks.run(spec.hooks["startContainer"], jsonio.loads(state_json), "startContainer")
    become_process(process, opts.seccomp, path, opts.preserve_fds)


def _console(spec, opts: InitOptions) -> int:
    """A pty from the container's own devpts (its /dev/pts resolved inside the root; the
    host's when it has none), its slave bound on the root's /dev/console."""
    from backends.linux_native import terminal

    if opts.console_fd is None:
        raise RuntimeFailure("process.terminal is true but no --console-socket was given")
    pts_fd = -1
    try:
        pts_fd = inroot.open_in_root(spec.root_path, "/dev/pts", inroot.O_PATH | os.O_DIRECTORY)
        pts = inroot.fd_path(pts_fd)
        if not os.path.exists(pts + "/ptmx"):
            pts = "/dev/pts"
    except OSError:
        pts = "/dev/pts"
    try:
        master, slave, name = terminal.open_pty(pts + "/ptmx" if pts != "/dev/pts" else "/dev/ptmx", pts)
        rootfs.bind_console(spec.root_path, f"{pts}/{name.rsplit('/', 1)[1]}")
    finally:
        if pts_fd >= 0:
            os.close(pts_fd)
    terminal.set_size(master, spec.process.console_size)
    terminal.send_master(opts.console_fd, master, name)
    os.close(master)
    os.close(opts.console_fd)
    return slave
