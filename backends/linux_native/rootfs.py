"""The container's filesystem: mounts under root.path, default devices, pivot_root, then
masked and read-only paths. Runs in the container's mount namespace, in its init."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import stat

from backends.linux_native import inroot, syscalls
from backends.linux_native.errors import ConfigError
from backends.linux_native.tables import (
    DEFAULT_DEVICES, DEFAULT_SYMLINKS, MOUNT_ATTR_TO_MS, MOUNT_FLAGS, MS_BIND, MS_MOVE, MS_NODEV,
    MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SLAVE, PROPAGATION,
    RECURSIVE_MOUNT_ATTRS, STATVFS_TO_MS,
)

# False: set recursive mount attributes by remounting each submount, as on kernels
# without mount_setattr (tests set it to exercise that path).
USE_MOUNT_SETATTR = True


def parse_options(options: list[str]) -> tuple[int, int, list[int], str, tuple[int, int]]:
    """(flags, flags to clear, propagation flags, data, (recursive attributes to set, to
    clear)) from mount(8)-style options and runc's recursive ones ("rro")."""
    flags = clear = attr_set = attr_clr = 0
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
        elif opt in RECURSIVE_MOUNT_ATTRS:
            to_set, to_clear = RECURSIVE_MOUNT_ATTRS[opt]
            attr_set = (attr_set & ~to_clear) | to_set
            attr_clr = (attr_clr & ~to_set) | to_clear
        elif opt in ("idmap", "ridmap", "tmpcopyup"):
            continue
        else:
            data.append(opt)
    return flags, clear, propagation, ",".join(data), (attr_set, attr_clr)


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


def _open_target(rootfd: int, dest: str, like_file: bool) -> int:
    """An fd of mount target DEST in the root, made where missing (an empty file for
    a file bind, else directories): made and opened one component at a time under the
    root, never through a link out of it."""
    try:
        if like_file:
            try:
                return inroot.open_in_root(rootfd, dest)
            except FileNotFoundError:
                return inroot.open_in_root(rootfd, dest, os.O_RDONLY | os.O_CREAT, mkdirs=True)
        return inroot.mkdirs_in_root(rootfd, dest)
    except OSError as exc:
        raise ConfigError(f"mount destination {dest}: {_why(exc)}") from None


def _why(exc: OSError) -> str:
    if exc.errno == 40:  # ELOOP
        return "goes through a /proc magic link or too many symbolic links"
    return exc.strerror or str(exc)


def _reopen(rootfd: int, dest: str) -> int:
    """DEST's fd again once something is mounted on it: an fd held from before names
    the covered directory, not the new mount."""
    return inroot.open_in_root(rootfd, dest)


def _mount_on(source: str | None, fd: int, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2) onto the inode FD holds (through /proc/self/fd, as runc does)."""
    syscalls.mount(source, inroot.fd_path(fd), fstype, flags, data)


def _mountinfo_unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def submounts(path: str) -> list[str]:
    """Mount points at PATH and below it, parents first (from /proc/self/mountinfo)."""
    prefix = path.rstrip("/") + "/"
    found: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _mountinfo_unescape(line.split(" ", 5)[4])
            if point == path or point.startswith(prefix):
                found.append(point)
    return found


def set_recursive(fd: int, attr_set: int, attr_clr: int) -> None:
    """Mount attributes on FD's mount and every mount below it: mount_setattr(2) with
    AT_RECURSIVE (5.12+), else a remount of each submount found in mountinfo."""
    if USE_MOUNT_SETATTR and syscalls.mount_setattr(fd, attr_set, attr_clr, recursive=True):
        return
    set_flags, clear_flags = _attrs_to_ms(attr_set), _attrs_to_ms(attr_clr)
    for point in submounts(inroot.real_path(fd)):
        flags = (locked_flags(point) | set_flags) & ~clear_flags
        syscalls.mount(None, point, None, MS_BIND | MS_REMOUNT | flags)


def _attrs_to_ms(attrs: int) -> int:
    flags = 0
    for attr, ms in MOUNT_ATTR_TO_MS.items():
        if attrs & attr:
            flags |= ms
    return flags


def bind(rootfd: int, source: str, dest: str, flags: int, propagation: list[int] | None = None,
         recursive: tuple[int, int] = (0, 0)) -> None:
    """Bind SOURCE on DEST (in the root), then remount with FLAGS if it asks for more than
    a bind, and set RECURSIVE (attributes to set, to clear) on it and every mount below."""
    fd = _open_target(rootfd, dest, not os.path.isdir(source))
    try:
        _mount_on(source, fd, None, MS_BIND | (flags & MS_REC))
    finally:
        os.close(fd)
    extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
    if not (extra or propagation or recursive[0] or recursive[1]):
        return
    fd = _reopen(rootfd, dest)
    try:
        target = inroot.fd_path(fd)
        if extra:
            syscalls.mount(None, target, None, MS_BIND | MS_REMOUNT | extra | (locked_flags(target) & ~MS_RDONLY))
        if recursive[0] or recursive[1]:
            set_recursive(fd, *recursive)
        for prop in propagation or ():
            syscalls.mount(None, target, None, prop)
    finally:
        os.close(fd)


def mount_cgroup(rootfd: int, dest: str, flags: int, cgroup_sources: list[tuple[str, str]], own_cgroupns: bool) -> None:
    """v2: cgroup2 (own namespace) or a bind of the container's cgroup; v1: a tmpfs with
    one bind per hierarchy, as runc lays it out."""
    ro = flags & MS_RDONLY
    if len(cgroup_sources) == 1 and cgroup_sources[0][1] == "":
        if own_cgroupns:
            fd = _open_target(rootfd, dest, False)
            try:
                _mount_on("cgroup2", fd, "cgroup2", flags & ~MS_BIND)
            finally:
                os.close(fd)
        else:
            bind(rootfd, cgroup_sources[0][0], dest, MS_BIND | MS_REC | ro)
        return
    fd = _open_target(rootfd, dest, False)
    try:
        _mount_on("tmpfs", fd, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
    finally:
        os.close(fd)
    tmpfs = _reopen(rootfd, dest)
    try:
        for source, name in cgroup_sources:
            bind(tmpfs, source, name, MS_BIND | MS_REC | MS_NOSUID | MS_NODEV | MS_NOEXEC | ro)
            if "," in name:
                for alias in name.split(","):
                    try:
                        os.symlink(name, alias, dir_fd=tmpfs)
                    except FileExistsError:
                        pass
        if ro:
            syscalls.mount(None, inroot.fd_path(tmpfs), None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "mode=755")
    finally:
        os.close(tmpfs)


def mount_all(spec, rootfd: int, cgroup_sources: list[tuple[str, str]], in_userns: bool) -> None:
    own_cgroupns = "cgroup" in spec.namespaces
    for m in spec.mounts:
        if not m.destination.startswith("/"):
            raise ConfigError(f"mount destination {m.destination!r} is not absolute")
        dest = m.destination
        flags, _clear, propagation, data, recursive = parse_options(m.options)
        if m.type == "bind" or flags & MS_BIND:
            source = m.source if m.source.startswith("/") else os.path.join(spec.bundle, m.source)
            bind(rootfd, source, dest, flags | MS_BIND, propagation, recursive)
            continue
        if m.type == "cgroup":
            mount_cgroup(rootfd, dest, flags, cgroup_sources, own_cgroupns)
            continue
        fd = _open_target(rootfd, dest, False)
        try:
            _mount_on(m.source or m.type, fd, m.type, flags, data)
        except OSError as exc:
            if m.type == "sysfs" and exc.errno == 1:
                # sysfs needs a network namespace owned by our user namespace; bind the host's.
                bind(rootfd, "/sys", dest, MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
            elif m.type == "mqueue" and exc.errno in (1, 22):
                bind(rootfd, "/dev/mqueue", dest, MS_BIND | MS_REC)
            elif m.type == "devpts" and exc.errno == 22 and in_userns and data and "gid=" in data:
                # gid=5 (tty) is not mapped in a single-id user namespace: runc's rootless spec drops it.
                _mount_on(m.source or m.type, fd, m.type, flags, ",".join(o for o in data.split(",") if not o.startswith("gid=")))
            else:
                raise
        finally:
            os.close(fd)
        if propagation or recursive[0] or recursive[1]:
            fd = _reopen(rootfd, dest)
            try:
                if recursive[0] or recursive[1]:
                    set_recursive(fd, *recursive)
                for prop in propagation:
                    syscalls.mount(None, inroot.fd_path(fd), None, prop)
            finally:
                os.close(fd)


def _device_parent(rootfd: int, path: str) -> tuple[int, str]:
    """The held directory of device PATH in the root (made where missing) and its name."""
    name = os.path.basename(path)
    if name in ("", ".", ".."):
        raise ConfigError(f"device path {path!r} names no file")
    try:
        return inroot.mkdirs_in_root(rootfd, os.path.dirname(path)), name
    except OSError as exc:
        raise ConfigError(f"device {path}: {_why(exc)}") from None


def _lexists(name: str, dirfd: int) -> bool:
    try:
        os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def make_devices(spec, rootfd: int, in_userns: bool) -> None:
    """Default devices and linux.devices: mknod, or a bind of the host node inside a user
    namespace (where mknod is not allowed). Each is made in its held parent directory
    under its own name; an entry in its place (a link too) is replaced, not followed."""
    wanted: list[tuple[str, str, int, int, int, int | None, int | None]] = [
        (path, kind, major, minor, mode, None, None) for path, (kind, major, minor, mode) in DEFAULT_DEVICES.items()
    ]
    for d in spec.devices:
        wanted.append((d.path, d.type, d.major, d.minor, d.mode if d.mode is not None else 0o666, d.uid, d.gid))
    old_umask = os.umask(0)
    try:
        for path, kind, major, minor, mode, uid, gid in wanted:
            parent, name = _device_parent(rootfd, path)
            try:
                exists = _lexists(name, parent)
                if exists and path in DEFAULT_DEVICES and not any(d.path == path for d in spec.devices):
                    continue
                if exists:
                    os.unlink(name, dir_fd=parent)
                if in_userns:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644, dir_fd=parent))
                    fd = os.open(name, inroot.O_PATH | os.O_NOFOLLOW, dir_fd=parent)
                    try:
                        _mount_on(path, fd, None, MS_BIND)
                    finally:
                        os.close(fd)
                    continue
                type_bits = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
                # umask 0: the node gets MODE exactly, with no chmod that could follow a link
                os.mknod(name, type_bits | (mode & 0o7777), os.makedev(major, minor), dir_fd=parent)
                if uid is not None or gid is not None:
                    os.chown(name, uid if uid is not None else -1, gid if gid is not None else -1,
                             dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(parent)
    finally:
        os.umask(old_umask)
    _make_symlinks(rootfd)


def _make_symlinks(rootfd: int) -> None:
    """/dev/fd, /dev/stdin... and /dev/ptmx -> pts/ptmx, in /dev as resolved in the root."""
    try:
        dev = inroot.open_in_root(rootfd, "/dev", inroot.O_PATH | os.O_DIRECTORY)
    except OSError:
        return
    try:
        for path, target in DEFAULT_SYMLINKS.items():
            name = path[len("/dev/"):]
            if not _lexists(name, dev):
                os.symlink(target, name, dir_fd=dev)
        try:
            os.stat("pts/ptmx", dir_fd=dev, follow_symlinks=False)
            pts_is_dir = stat.S_ISDIR(os.stat("pts", dir_fd=dev, follow_symlinks=False).st_mode)
        except OSError:
            return
        if not pts_is_dir:
            return
        try:
            if not stat.S_ISLNK(os.stat("ptmx", dir_fd=dev, follow_symlinks=False).st_mode):
                os.unlink("ptmx", dir_fd=dev)
        except FileNotFoundError:
            pass
        if not _lexists("ptmx", dev):
            os.symlink("pts/ptmx", "ptmx", dir_fd=dev)
    finally:
        os.close(dev)


def prepare(spec, cgroup_sources: list[tuple[str, str]], in_userns: bool) -> None:
    """Everything up to pivot_root: propagation, rootfs bind, mounts, devices. Every
    target is resolved inside the root to an fd (inroot.py) and mounted through it."""
    propagation = PROPAGATION.get(spec.rootfs_propagation, MS_SLAVE | MS_REC)
    # Keep every mount we make from propagating back to the host.
    syscalls.mount(None, "/", None, propagation if propagation & (MS_SLAVE | MS_PRIVATE) else MS_SLAVE | MS_REC)
    syscalls.mount(spec.root_path, spec.root_path, None, MS_BIND | MS_REC)
    rootfd = os.open(spec.root_path, inroot.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        mount_all(spec, rootfd, cgroup_sources, in_userns)
        make_devices(spec, rootfd, in_userns)
    finally:
        os.close(rootfd)


def bind_console(root_path: str, pty: str) -> None:
    """Bind the pty PTY on /dev/console of the root if it has a /dev, both resolved inside
    the root (a link at /dev or /dev/console is not followed out of it)."""
    rootfd = os.open(root_path, inroot.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            dev = inroot.open_in_root(rootfd, "/dev", inroot.O_PATH | os.O_DIRECTORY)
        except OSError:
            return
        try:
            st = os.stat("console", dir_fd=dev, follow_symlinks=False) if _lexists("console", dev) else None
            if st is not None and not stat.S_ISREG(st.st_mode) and not stat.S_ISCHR(st.st_mode):
                os.unlink("console", dir_fd=dev)
                st = None
            if st is None:
                os.close(os.open("console", os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dev))
            fd = os.open("console", inroot.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev)
            try:
                _mount_on(pty, fd, None, MS_BIND)
            finally:
                os.close(fd)
        finally:
            os.close(dev)
    finally:
        os.close(rootfd)


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


def _held(path: str) -> int:
    """After pivot_root: PATH's fd, resolved in "/" with /proc magic links refused (one
    could lead to an fd the runtime still holds); -1 if it does not exist."""
    try:
        return inroot.open_in_root("/", path)
    except FileNotFoundError:
        return -1
    except OSError as exc:
        raise ConfigError(f"{path}: {_why(exc)}") from None


def _name(fd: int, path: str, proc: bool) -> str:
    """What to hand mount(2) for the checked PATH held by FD: its /proc/self/fd name, or
    PATH itself in a container without /proc (no magic link to fear there)."""
    return inroot.fd_path(fd) if proc else path


def mask(paths: list[str]) -> None:
    """maskedPaths: /dev/null over files, an empty read-only tmpfs over directories."""
    proc = os.path.isdir("/proc/self/fd")
    for path in paths:
        fd = _held(path)
        if fd < 0:
            continue
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                syscalls.mount("tmpfs", _name(fd, path, proc), "tmpfs", MS_RDONLY, "size=0k")
            else:
                syscalls.mount("/dev/null", _name(fd, path, proc), None, MS_BIND)
        finally:
            os.close(fd)


def readonly(paths: list[str]) -> None:
    proc = os.path.isdir("/proc/self/fd")
    for path in paths:
        fd = _held(path)
        if fd < 0:
            continue
        try:
            target = _name(fd, path, proc)
            syscalls.mount(target, target, None, MS_BIND | MS_REC)
        finally:
            os.close(fd)
        fd = _held(path)  # the bind just made, not the directory it covers
        try:
            target = _name(fd, path, proc)
            syscalls.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(target))
        finally:
            os.close(fd)


def readonly_root() -> None:
    syscalls.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags("/"))


def write_sysctls(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
