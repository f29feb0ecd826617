"""The container's filesystem: mounts under root.path, default devices, pivot_root, then
masked and read-only paths. Runs in the container's mount namespace, in its init."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import stat

from backends.linux_native import syscalls
from backends.linux_native.errors import ConfigError
from backends.linux_native.tables import (
    DEFAULT_DEVICES, DEFAULT_SYMLINKS, MOUNT_FLAGS, MS_BIND, MS_MOVE, MS_NODEV, MS_NOEXEC,
    MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SLAVE, PROPAGATION, STATVFS_TO_MS,
)


def secure_join(root: str, unsafe: str) -> str:
    """ROOT + UNSAFE with every symlink resolved inside ROOT, so a hostile rootfs cannot
    point a mount destination at the host."""
    parts = [p for p in unsafe.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root + "/" + "/".join(resolved + [part])
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            resolved.extend(p for p in parts if p)
            break
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise ConfigError(f"too many symlinks under {unsafe}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return root + "/" + "/".join(resolved)


def parse_options(options: list[str]) -> tuple[int, int, list[int], str]:
    """(flags, flags to clear, propagation flags, data) from mount(8)-style options."""
    flags = clear = 0
    propagation: list[int] = []
    data: list[str] = []
    for opt in options:
        if opt in MOUNT_FLAGS:
            is_clear, flag = MOUNT_FLAGS[opt]
            if is_clear:
                flags &= ~flag
                clear |= flag
            else:
                flags |= flag
        elif opt in PROPAGATION:
            propagation.append(PROPAGATION[opt])
        elif opt in ("idmap", "ridmap", "tmpcopyup"):
            continue
        else:
            data.append(opt)
    return flags, clear, propagation, ",".join(data)


def locked_flags(path: str) -> int:
    """Flags a remount must keep (in a user namespace the kernel refuses to drop them)."""
    try:
        f_flag = os.statvfs(path).f_flag
    except OSError:
        return 0
    flags = 0
    for bit, ms in STATVFS_TO_MS.items():
        if f_flag & bit:
            flags |= ms
    return flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY | 0x400 | 0x800 | (1 << 21))


def _make_target(dest: str, like_file: bool) -> None:
    if os.path.lexists(dest):
        return
    if like_file:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    else:
        os.makedirs(dest, exist_ok=True)


def bind(source: str, dest: str, flags: int, propagation: list[int] | None = None) -> None:
    """Bind SOURCE on DEST, then remount with FLAGS if it asks for more than a bind."""
    _make_target(dest, not os.path.isdir(source))
    syscalls.mount(source, dest, None, MS_BIND | (flags & MS_REC))
    extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
    if extra:
        syscalls.mount(None, dest, None, MS_BIND | MS_REMOUNT | extra | (locked_flags(dest) & ~MS_RDONLY))
    for prop in propagation or ():
        syscalls.mount(None, dest, None, prop)


def mount_cgroup(dest: str, flags: int, cgroup_sources: list[tuple[str, str]], own_cgroupns: bool) -> None:
    """v2: cgroup2 (own namespace) or a bind of the container's cgroup; v1: a tmpfs with
    one bind per hierarchy, as runc lays it out."""
    os.makedirs(dest, exist_ok=True)
    ro = flags & MS_RDONLY
    if len(cgroup_sources) == 1 and cgroup_sources[0][1] == "":
        if own_cgroupns:
            syscalls.mount("cgroup2", dest, "cgroup2", flags & ~MS_BIND)
        else:
            bind(cgroup_sources[0][0], dest, MS_BIND | MS_REC | ro)
        return
    syscalls.mount("tmpfs", dest, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
    for source, name in cgroup_sources:
        target = os.path.join(dest, name)
        os.makedirs(target, exist_ok=True)
        syscalls.mount(source, target, None, MS_BIND | MS_REC)
        syscalls.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC | ro)
        if "," in name:
            for alias in name.split(","):
                link = os.path.join(dest, alias)
                if not os.path.lexists(link):
                    os.symlink(name, link)
    if ro:
        syscalls.mount(None, dest, None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "mode=755")


def mount_all(spec, cgroup_sources: list[tuple[str, str]], in_userns: bool) -> None:
    rootfs = spec.root_path
    own_cgroupns = "cgroup" in spec.namespaces
    for m in spec.mounts:
        if not m.destination.startswith("/"):
            raise ConfigError(f"mount destination {m.destination!r} is not absolute")
        dest = secure_join(rootfs, m.destination)
        flags, _clear, propagation, data = parse_options(m.options)
        if m.type == "bind" or flags & MS_BIND:
            source = m.source if m.source.startswith("/") else os.path.join(spec.bundle, m.source)
            bind(source, dest, flags | MS_BIND, propagation)
            continue
        if m.type == "cgroup":
            mount_cgroup(dest, flags, cgroup_sources, own_cgroupns)
            continue
        _make_target(dest, False)
        try:
            syscalls.mount(m.source or m.type, dest, m.type, flags, data)
        except OSError as exc:
            if m.type == "sysfs" and exc.errno == 1:
                # sysfs needs a network namespace owned by our user namespace; bind the host's.
                bind("/sys", dest, MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
            elif m.type == "mqueue" and exc.errno in (1, 22):
                bind("/dev/mqueue", dest, MS_BIND | MS_REC)
            else:
                raise
        for prop in propagation:
            syscalls.mount(None, dest, None, prop)


def make_devices(spec, in_userns: bool) -> None:
    """Default devices and linux.devices: mknod, or a bind of the host node inside a user
    namespace (where mknod is not allowed)."""
    rootfs = spec.root_path
    wanted: list[tuple[str, str, int, int, int, int | None, int | None]] = [
        (path, kind, major, minor, mode, None, None) for path, (kind, major, minor, mode) in DEFAULT_DEVICES.items()
    ]
    for d in spec.devices:
        wanted.append((d.path, d.type, d.major, d.minor, d.mode if d.mode is not None else 0o666, d.uid, d.gid))
    old_umask = os.umask(0)
    try:
        for path, kind, major, minor, mode, uid, gid in wanted:
            dest = secure_join(rootfs, path)
            if os.path.lexists(dest) and path in DEFAULT_DEVICES and not any(d.path == path for d in spec.devices):
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if in_userns:
                _make_target(dest, True)
                syscalls.mount(path, dest, None, MS_BIND)
                continue
            type_bits = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
            if os.path.lexists(dest):
                os.unlink(dest)
            os.mknod(dest, type_bits | (mode & 0o7777), os.makedev(major, minor))
            os.chmod(dest, mode & 0o7777)
            if uid is not None or gid is not None:
                os.chown(dest, uid if uid is not None else -1, gid if gid is not None else -1)
    finally:
        os.umask(old_umask)
    for path, target in DEFAULT_SYMLINKS.items():
        dest = rootfs + path
        if not os.path.lexists(dest) and os.path.isdir(os.path.dirname(dest)):
            os.symlink(target, dest)
    ptmx = rootfs + "/dev/ptmx"
    if os.path.isdir(rootfs + "/dev/pts") and os.path.exists(rootfs + "/dev/pts/ptmx"):
        if os.path.lexists(ptmx) and not os.path.islink(ptmx):
            os.unlink(ptmx)
        if not os.path.lexists(ptmx):
            os.symlink("pts/ptmx", ptmx)


def prepare(spec, cgroup_sources: list[tuple[str, str]], in_userns: bool) -> None:
    """Everything up to pivot_root: propagation, rootfs bind, mounts, devices."""
    propagation = PROPAGATION.get(spec.rootfs_propagation, MS_SLAVE | MS_REC)
    # Keep every mount we make from propagating back to the host.
    syscalls.mount(None, "/", None, propagation if propagation & (MS_SLAVE | MS_PRIVATE) else MS_SLAVE | MS_REC)
    syscalls.mount(spec.root_path, spec.root_path, None, MS_BIND | MS_REC)
    mount_all(spec, cgroup_sources, in_userns)
    make_devices(spec, in_userns)


def pivot(rootfs: str, no_pivot: bool, propagation_name: str) -> None:
    os.chdir(rootfs)
    if no_pivot:
        syscalls.mount(rootfs, "/", None, MS_MOVE)
        os.chroot(".")
    else:
        # pivot_root(".", ".") stacks the old root on top of the new one; detaching it
        # then leaves the new root, without needing a put_old directory.
        syscalls.pivot_root(".", ".")
        syscalls.mount(None, ".", None, MS_SLAVE | MS_REC)
        syscalls.umount2(".", 2)  # MNT_DETACH
    os.chdir("/")
    if propagation_name in PROPAGATION and propagation_name not in ("slave", "rslave"):
        syscalls.mount(None, "/", None, PROPAGATION[propagation_name])


def mask(paths: list[str]) -> None:
    """maskedPaths: /dev/null over files, an empty read-only tmpfs over directories."""
    for path in paths:
        try:
            if os.path.isdir(path):
                syscalls.mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0k")
            else:
                syscalls.mount("/dev/null", path, None, MS_BIND)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno != 2:
                raise


def readonly(paths: list[str]) -> None:
    for path in paths:
        try:
            syscalls.mount(path, path, None, MS_BIND | MS_REC)
        except OSError as exc:
            if exc.errno == 2:
                continue
            raise
        syscalls.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(path))


def readonly_root() -> None:
    syscalls.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags("/"))


def write_sysctls(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
