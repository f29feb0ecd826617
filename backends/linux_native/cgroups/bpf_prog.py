"""bpf(2) for a cgroup's device program: load it, attach it in place of the one there.
The program's bytes come from devices_bpf.assemble.

The cgroup holds the program once attached: the runtime closes its descriptor right
away, and the kernel detaches and frees the program when it frees the cgroup, after
`delete` removes it (as runc and crun leave it; 15-30 ms later here). Attaching uses
BPF_F_ALLOW_MULTI, as runc and crun do (a parent's programs, a systemd unit's for one,
still run, and all must allow); an update swaps the program atomically with BPF_F_REPLACE,
or on kernels before 5.6 attaches the new one before detaching the old, so the container
is never without one."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
from backends.linux_native import syscalls

_PROG_LOAD, _PROG_ATTACH, _PROG_DETACH, _PROG_GET_FD_BY_ID, _PROG_QUERY = 5, 8, 9, 13, 16
_PROG_TYPE_CGROUP_DEVICE = 15
_CGROUP_DEVICE = 6  # enum bpf_attach_type
_F_ALLOW_MULTI, _F_REPLACE = 2, 4
_EPERM, _ENOENT, _EAGAIN, _EINVAL, _ENOSPC = 1, 2, 11, 22, 28

# The kernel checks a program's license only for the helpers it calls; this one calls none.
_LICENSE = bytearray(b"Apache\0")
_NAME = b"hostrt_devices"  # what bpftool shows (at most 15 bytes)


def _u32(attr: bytearray, offset: int, value: int) -> None:
    attr[offset:offset + 4] = value.to_bytes(4, "little")


def _u64(attr: bytearray, offset: int, value: int) -> None:
    attr[offset:offset + 8] = value.to_bytes(8, "little")


def load(insns: bytes) -> int:
    """The descriptor of the loaded program (close-on-exec, as bpf(2) makes them)."""
    code = bytearray(insns)
    # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version, prog_flags, prog_name
    attr = bytearray(64)
    _u32(attr, 0, _PROG_TYPE_CGROUP_DEVICE)
    _u32(attr, 4, len(code) // 8)
    _u64(attr, 8, syscalls.address(code))
    _u64(attr, 16, syscalls.address(_LICENSE))
    attr[48:48 + len(_NAME)] = _NAME
    for attempt in range(30):
        try:
            return syscalls.bpf(_PROG_LOAD, attr)
        except OSError as exc:
            if exc.errno == _EAGAIN:  # the verifier was interrupted by a signal
                continue
            if exc.errno == _EPERM and attempt == 0 and _raise_memlock():
                continue  # before 5.11 programs were charged to RLIMIT_MEMLOCK
            raise OSError(exc.errno, f"loading the device program: {exc.strerror}{_verifier_log(attr)}") from None
    raise OSError(_EAGAIN, "loading the device program: interrupted 30 times")


def _raise_memlock() -> bool:
    """RLIMIT_MEMLOCK as high as it goes; False if it is there already."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    for limit in (resource.RLIM_INFINITY, hard):
        if limit != soft:
            try:
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, limit))
                return True
            except (ValueError, OSError):
                pass
    return False


def _verifier_log(attr: bytearray) -> str:
    """The verifier's reason, for the error message (a failed load is a bug to report)."""
    log = bytearray(65536)
    _u32(attr, 24, 1)
    _u32(attr, 28, len(log))
    _u64(attr, 32, syscalls.address(log))
    try:
        os.close(syscalls.bpf(_PROG_LOAD, attr))
    except OSError:
        pass
    text = log[: log.find(0)].decode(errors="replace").strip() if 0 in log else ""
    return f" ({text.splitlines()[-1]})" if text else ""


def attached(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached to this very cgroup (not its parents')."""
    slots = 64  # the kernel's limit per cgroup and attach type
    while True:
        ids = bytearray(4 * slots)
        # target_fd, attach_type, query_flags, attach_flags (out), prog_ids, prog_cnt (in/out)
        attr = bytearray(32)
        _u32(attr, 0, cgroup_fd)
        _u32(attr, 4, _CGROUP_DEVICE)
        _u64(attr, 16, syscalls.address(ids))
        _u32(attr, 24, slots)
        try:
            syscalls.bpf(_PROG_QUERY, attr)
        except OSError as exc:
            if exc.errno == _ENOSPC:
                slots = int.from_bytes(attr[24:28], "little") + 8
                continue
            raise OSError(exc.errno, f"listing device programs: {exc.strerror}") from None
        count = int.from_bytes(attr[24:28], "little")
        return [int.from_bytes(ids[4 * i:4 * i + 4], "little") for i in range(count)]


def _fd_by_id(prog_id: int) -> int | None:
    attr = bytearray(12)
    _u32(attr, 0, prog_id)
    try:
        return syscalls.bpf(_PROG_GET_FD_BY_ID, attr)
    except OSError as exc:
        if exc.errno == _ENOENT:  # gone meanwhile
            return None
        raise


def _attach(cgroup_fd: int, prog_fd: int, replace_fd: int = -1) -> None:
    # target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd
    attr = bytearray(20)
    _u32(attr, 0, cgroup_fd)
    _u32(attr, 4, prog_fd)
    _u32(attr, 8, _CGROUP_DEVICE)
    _u32(attr, 12, _F_ALLOW_MULTI | (_F_REPLACE if replace_fd >= 0 else 0))
    if replace_fd >= 0:
        _u32(attr, 16, replace_fd)
    syscalls.bpf(_PROG_ATTACH, attr)


def _detach(cgroup_fd: int, prog_fd: int) -> None:
    attr = bytearray(20)
    _u32(attr, 0, cgroup_fd)
    _u32(attr, 4, prog_fd)
    _u32(attr, 8, _CGROUP_DEVICE)
    try:
        syscalls.bpf(_PROG_DETACH, attr)
    except OSError as exc:
        if exc.errno != _ENOENT:
            raise


def _detach_ids(cgroup_fd: int, prog_ids: list[int]) -> None:
    for prog_id in prog_ids:
        fd = _fd_by_id(prog_id)
        if fd is not None:
            try:
                _detach(cgroup_fd, fd)
            finally:
                os.close(fd)


def _open_dir(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def install(cgroup_dir: str, insns: bytes) -> None:
    """Load INSNS and make it the device program of CGROUP_DIR, in place of any there."""
    prog_fd = load(insns)
    dir_fd = -1
    try:
        dir_fd = _open_dir(cgroup_dir)
        for _ in range(20):  # another update may swap the old program under us
            old = attached(dir_fd)
            if len(old) == 1:
                old_fd = _fd_by_id(old[0])
                if old_fd is None:
                    continue
                try:
                    _attach(dir_fd, prog_fd, old_fd)
                    return
                except OSError as exc:
                    if exc.errno == _ENOENT:
                        continue
                    if exc.errno != _EINVAL:  # EINVAL: no BPF_F_REPLACE before 5.6
                        raise
                finally:
                    os.close(old_fd)
            _attach(dir_fd, prog_fd)
            _detach_ids(dir_fd, old)
            return
        raise OSError(_EAGAIN, "the cgroup's device program kept changing")
    except OSError as exc:
        raise OSError(exc.errno, f"device program for {cgroup_dir}: {exc.strerror}") from None
    finally:
        os.close(prog_fd)
        if dir_fd >= 0:
            os.close(dir_fd)
