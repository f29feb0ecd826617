"""Run the runtime from a sealed in-memory copy of its interpreter (CVE-2019-5736 class).

A container's init and exec processes are forks of the runtime until their final execve,
so until then /proc/self/exe is the host's Python binary. A container whose entrypoint is
`/proc/self/exe` or a `#!/proc/self/exe` script would be handed that host file, and a
process holding it could rewrite the host's interpreter once it is no longer running. So
every process that forks container processes (the `create`/`run`/`exec` command line, the
engine server, the monitor, the guest daemon) first re-executes itself from a memfd copy
of its interpreter sealed against writes: what a container can reach through
/proc/self/exe is then that copy, which nobody can modify.

`reexec()` is a no-op in a process that already runs sealed; `is_sealed()` is what
`process.fork_container` checks before it forks a container process."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import sys

from backends.linux_native.errors import RuntimeFailure

MEMFD_NAME = "hostrt-sealed-exe"
# The runtime commands whose fork becomes a container process.
FORKS_CONTAINER_PROCESS = frozenset(("create", "run", "exec"))
_MFD_CLOEXEC, _MFD_ALLOW_SEALING, _MFD_EXEC = 0x1, 0x2, 0x10
_F_ADD_SEALS = 1033
_F_SEAL_SEAL, _F_SEAL_SHRINK, _F_SEAL_GROW, _F_SEAL_WRITE = 0x1, 0x2, 0x4, 0x8
_ALL_SEALS = _F_SEAL_SEAL | _F_SEAL_SHRINK | _F_SEAL_GROW | _F_SEAL_WRITE
# Set in the environment of the re-executed process only while it starts, so that a
# failed memfd exec cannot loop; removed again by reexec() in the new process.
_GUARD = "_HOSTRT_SEALED_EXE"


def is_sealed() -> bool:
    """Whether this process runs from the sealed copy (its exe is our memfd)."""
    try:
        return os.readlink("/proc/self/exe").startswith(f"/memfd:{MEMFD_NAME}")
    except OSError:
        return False


def _sealed_copy() -> int:
    """A close-on-exec memfd holding this process's executable, sealed against any change."""
    from backends.linux_native import syscalls

    try:
        fd = os.memfd_create(MEMFD_NAME, _MFD_CLOEXEC | _MFD_ALLOW_SEALING | _MFD_EXEC)
    except OSError as exc:
        if exc.errno != 22:  # EINVAL: a kernel before 6.3 has no MFD_EXEC (and needs none)
            raise
        fd = os.memfd_create(MEMFD_NAME, _MFD_CLOEXEC | _MFD_ALLOW_SEALING)
    try:
        src = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(src).st_size
            copied = 0
            while copied < size:
                sent = os.sendfile(fd, src, copied, size - copied)
                if sent == 0:
                    break
                copied += sent
        finally:
            os.close(src)
        syscalls.add_seals(fd, _ALL_SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


_copy_fd: int | None = None


def copy_fd() -> int:
    """This process's sealed copy of its interpreter, made once: a caller that execs the runtime
    for a command that forks container processes starts it from this copy (/proc/self/fd/N),
    so that the runtime need not re-execute itself (one interpreter start instead of two)."""
    global _copy_fd
    if _copy_fd is None:
        _copy_fd = _sealed_copy()
    return _copy_fd


def reexec() -> None:
    """Replace this process by the same command run from a sealed copy of its interpreter.
    Returns only where that is already the case, or where this host refuses to execute a
    memfd (vm.memfd_noexec=2): then the runtime refuses to start containers (is_sealed)."""
    if os.environ.get(_GUARD) is not None:
        os.unsetenv(_GUARD)
        os.environ.pop(_GUARD, None)
        return
    if is_sealed():
        return
    argv = list(sys.orig_argv)
    fd = _sealed_copy()
    env = dict(os.environ)
    env[_GUARD] = "1"
    try:
        os.execve(f"/proc/self/fd/{fd}", argv, env)
    except OSError as exc:
        os.close(fd)
        raise RuntimeFailure(f"cannot run the runtime from a sealed copy of {sys.executable}: {exc.strerror}") from None


def require() -> None:
    """Refuse to fork a container process from an unsealed runtime (see the module's docstring)."""
    if not is_sealed():
        raise RuntimeFailure("internal error: container processes are only started from a sealed runtime (sealed_exe.reexec)")
