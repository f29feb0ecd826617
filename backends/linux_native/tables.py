"""Data tables: namespaces, mount options, capabilities, signals, default devices and
paths. Policy lives here as data so the code that applies it stays short."""

from __future__ import annotations

# Namespace type (spec name) -> (clone flag, /proc/PID/ns name). Order is the join order:
# user first (it owns the others), mount last but one, pid last (it only affects children).
NAMESPACES: dict[str, tuple[int, str]] = {
    "user": (0x10000000, "user"),
    "ipc": (0x08000000, "ipc"),
    "uts": (0x04000000, "uts"),
    "network": (0x40000000, "net"),
    "cgroup": (0x02000000, "cgroup"),
    "mount": (0x00020000, "mnt"),
    "pid": (0x20000000, "pid"),
    "time": (0x00000080, "time"),
}

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# mount(8) option -> (clear the flag?, flag)
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID), "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV), "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC), "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS), "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC), "mand": (False, MS_MANDLOCK), "nomand": (True, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME), "atime": (True, MS_NOATIME),
    "nodiratime": (False, MS_NODIRATIME), "diratime": (True, MS_NODIRATIME),
    "relatime": (False, MS_RELATIME), "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME), "nostrictatime": (True, MS_STRICTATIME),
    "lazytime": (False, MS_LAZYTIME), "nolazytime": (True, MS_LAZYTIME),
    "nosymfollow": (False, MS_NOSYMFOLLOW), "symfollow": (True, MS_NOSYMFOLLOW),
    "bind": (False, MS_BIND), "rbind": (False, MS_BIND | MS_REC),
    "remount": (False, MS_REMOUNT), "silent": (False, MS_SILENT), "loud": (True, MS_SILENT),
}

# mount_setattr(2) attributes (struct mount_attr), and the recursive mount options runc and
# crun take: "rro" is "ro" on the mount and on every mount below it (Docker's `:ro`).
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# option -> (attributes to set, attributes to clear)
RECURSIVE_MOUNT_ATTRS: dict[str, tuple[int, int]] = {
    "rro": (MOUNT_ATTR_RDONLY, 0), "rrw": (0, MOUNT_ATTR_RDONLY),
    "rnosuid": (MOUNT_ATTR_NOSUID, 0), "rsuid": (0, MOUNT_ATTR_NOSUID),
    "rnodev": (MOUNT_ATTR_NODEV, 0), "rdev": (0, MOUNT_ATTR_NODEV),
    "rnoexec": (MOUNT_ATTR_NOEXEC, 0), "rexec": (0, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (MOUNT_ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, MOUNT_ATTR_NOSYMFOLLOW),
    "rrelatime": (MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME), "rnoatime": (MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME),
    "rstrictatime": (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME),
}

# The same attributes as remount flags, for kernels without mount_setattr.
MOUNT_ATTR_TO_MS: dict[int, int] = {
    MOUNT_ATTR_RDONLY: MS_RDONLY, MOUNT_ATTR_NOSUID: MS_NOSUID, MOUNT_ATTR_NODEV: MS_NODEV,
    MOUNT_ATTR_NOEXEC: MS_NOEXEC, MOUNT_ATTR_NOATIME: MS_NOATIME, MOUNT_ATTR_STRICTATIME: MS_STRICTATIME,
    MOUNT_ATTR_NODIRATIME: MS_NODIRATIME, MOUNT_ATTR_NOSYMFOLLOW: MS_NOSYMFOLLOW,
}

PROPAGATION: dict[str, int] = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}

# statvfs f_flag bit -> mount flag, to keep locked flags on read-only remounts.
STATVFS_TO_MS: dict[int, int] = {
    1: MS_RDONLY, 2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC,
    1024: MS_NOATIME, 2048: MS_NODIRATIME, 4096: MS_RELATIME,
}

CAPABILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL "
            "CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE "
            "CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER "
            "CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT "
            "CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME "
            "CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL "
            "CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM "
            "CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE"
        ).split()
    )
}

SIGNALS: dict[str, int] = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
    "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}

RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

# Device nodes every container gets: path -> (type, major, minor, mode).
DEFAULT_DEVICES: dict[str, tuple[str, int, int, int]] = {
    "/dev/null": ("c", 1, 3, 0o666),
    "/dev/zero": ("c", 1, 5, 0o666),
    "/dev/full": ("c", 1, 7, 0o666),
    "/dev/random": ("c", 1, 8, 0o666),
    "/dev/urandom": ("c", 1, 9, 0o666),
    "/dev/tty": ("c", 5, 0, 0o666),
}

DEFAULT_SYMLINKS: dict[str, str] = {
    "/dev/fd": "/proc/self/fd",
    "/dev/stdin": "/proc/self/fd/0",
    "/dev/stdout": "/proc/self/fd/1",
    "/dev/stderr": "/proc/self/fd/2",
    "/dev/core": "/proc/kcore",
}

# Device cgroup rules every container gets after the spec's (so the spec cannot deny them),
# as type, major, minor (-1: any), access: runc's list, which Docker's containers get: mknod
# of any node (opening one is another matter), null, random, full, tty, zero, urandom, the
# ptys, ptmx, and /dev/net/tun (kept by runc for compatibility). Not the host's console
# (5:1): a container's /dev/console is a pty.
DEFAULT_DEVICE_RULES: tuple[tuple[str, int, int, str], ...] = (
    ("c", -1, -1, "m"), ("b", -1, -1, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"), ("c", 1, 5, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 136, -1, "rwm"), ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"),
)
