"""Docker's default seccomp profile, as data: what any container may call, what each capability
adds, and the few calls allowed only with certain arguments. Everything else fails with EPERM.

An allow list rather than a list of refusals, so that a syscall nobody reviewed (one added by a
newer kernel, or one this table forgot) is refused, not let through. The set is Docker's
(moby's profiles/seccomp), grouped here by what the calls do. `hostrt.seccomp_profile` turns the
table into a runtime-spec `linux.seccomp` for one container's capabilities and architecture.
"""

from __future__ import annotations

from hostrt.seccomp_profile import Arg, Profile, Rule, When

EPERM = 1
ENOSYS = 38

# The namespace flags of clone(2). A container without CAP_SYS_ADMIN may clone, but not into new
# namespaces: a user namespace would hand it every capability again, inside. (CLONE_NEWTIME
# shares its bit with the exit signal in clone(2), so only unshare and clone3 can ask for it.)
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACE_FLAGS = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET

# Address families socket(2) may not open: AF_ALG (38: the kernel's crypto API) and AF_VSOCK
# (40: the hypervisor's sockets). Allowed are those below 38, 39 (AF_NFC), and those above 40.
AF_ALG, AF_NFC, AF_VSOCK = 38, 39, 40

# personality(2) values that only choose an ABI flavour a program may legitimately need
# (PER_LINUX, PER_LINUX32, UNAME26 with either) or query the current one (0xffffffff).
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# Syscalls any container may make, by what they do. 32-bit and time64 variants sit beside
# their 64-bit names: a syscall that does not exist on an architecture simply is not added.
FILES = (
    "access", "faccessat", "faccessat2", "chdir", "fchdir", "getcwd", "umask",
    "open", "openat", "openat2", "creat", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock",
    "stat", "stat64", "lstat", "lstat64", "fstat", "fstat64", "fstatat64", "newfstatat", "statx",
    "statfs", "statfs64", "fstatfs", "fstatfs64",
    "getdents", "getdents64", "readlink", "readlinkat", "mkdir", "mkdirat", "rmdir", "mknod", "mknodat",
    "link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "chown32", "fchown", "fchown32", "fchownat",
    "lchown", "lchown32", "truncate", "truncate64", "ftruncate", "ftruncate64", "fallocate",
    "utime", "utimes", "utimensat", "utimensat_time64", "futimesat", "name_to_handle_at",
    "sync", "syncfs", "fsync", "fdatasync", "sync_file_range", "fadvise64", "fadvise64_64", "readahead",
    "cachestat",
    "getxattr", "lgetxattr", "fgetxattr", "getxattrat", "setxattr", "lsetxattr", "fsetxattr", "setxattrat",
    "listxattr", "llistxattr", "flistxattr", "listxattrat", "removexattr", "lremovexattr", "fremovexattr",
    "removexattrat",
    "statmount", "listmount",  # they only read the mount table
)
IO = (
    "read", "readv", "pread64", "preadv", "preadv2", "write", "writev", "pwrite64", "pwritev", "pwritev2",
    "lseek", "_llseek", "sendfile", "sendfile64", "splice", "tee", "vmsplice", "copy_file_range", "ioctl",
    "pipe", "pipe2",
    "select", "_newselect", "pselect6", "pselect6_time64", "poll", "ppoll", "ppoll_time64",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait", "epoll_wait_old", "epoll_pwait",
    "epoll_pwait2", "eventfd", "eventfd2", "signalfd", "signalfd4",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark",
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
)
MEMORY = (
    "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "remap_file_pages",
    "mlock", "mlock2", "mlockall", "munlock", "munlockall", "memfd_create", "memfd_secret", "membarrier",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "map_shadow_stack", "mseal", "process_mrelease",
)
PROCESSES = (
    "execve", "execveat", "exit", "exit_group", "fork", "vfork", "wait4", "waitid", "waitpid",
    "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid", "set_tid_address",
    "getpriority", "setpriority", "ioprio_get", "ioprio_set", "prctl", "capget", "capset",
    "getrlimit", "setrlimit", "ugetrlimit", "prlimit64", "getrusage", "times", "getcpu", "sysinfo", "uname",
    "pidfd_open", "pidfd_send_signal", "seccomp", "landlock_create_ruleset", "landlock_add_rule",
    "landlock_restrict_self", "rseq", "restart_syscall", "get_robust_list", "set_robust_list",
    "get_thread_area", "set_thread_area", "uretprobe", "riscv_hwprobe",
    "futex", "futex_time64", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue",
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getattr", "sched_setattr", "sched_getparam",
    "sched_setparam", "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "sched_rr_get_interval_time64",
)
# Tracing the container's own processes; before Linux 4.8 a tracer could change a syscall after
# seccomp had checked it, so older kernels get these only with CAP_SYS_PTRACE.
TRACING = ("ptrace", "process_vm_readv", "process_vm_writev")
CREDENTIALS = (
    "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid", "getegid32",
    "getresuid", "getresuid32", "getresgid", "getresgid32", "getgroups", "getgroups32",
    "setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid", "setregid32",
    "setresuid", "setresuid32", "setresgid", "setresgid32", "setgroups", "setgroups32",
    "setfsuid", "setfsuid32", "setfsgid", "setfsgid32",
)
SIGNALS = (
    "kill", "tkill", "tgkill", "rt_sigaction", "rt_sigprocmask", "rt_sigpending", "rt_sigqueueinfo",
    "rt_tgsigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "sigaltstack", "sigprocmask", "sigreturn", "pause", "alarm",
)
TIME = (  # reading clocks and timers; adjtimex and clock_adjtime change a clock only with CAP_SYS_TIME
    "time", "gettimeofday", "clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64",
    "clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "adjtimex", "clock_adjtime", "clock_adjtime64",
    "getitimer", "setitimer", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "getrandom",
)
NETWORK = (  # socket(2) itself is allowed per address family, below
    "accept", "accept4", "bind", "connect", "listen", "getpeername", "getsockname", "getsockopt", "setsockopt",
    "socketpair", "shutdown", "send", "sendto", "sendmsg", "sendmmsg", "recv", "recvfrom", "recvmsg",
    "recvmmsg", "recvmmsg_time64", "socketcall",
)
IPC = (  # System V and POSIX IPC, confined by the IPC namespace
    "ipc", "msgget", "msgctl", "msgsnd", "msgrcv", "semget", "semctl", "semop", "semtimedop",
    "semtimedop_time64", "shmget", "shmctl", "shmat", "shmdt", "mq_open", "mq_unlink", "mq_notify",
    "mq_getsetattr", "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive", "mq_timedreceive_time64",
)
ALLOWED = FILES + IO + MEMORY + PROCESSES + CREDENTIALS + SIGNALS + TIME + NETWORK + IPC

# Calls that exist, or are safe, only on some architectures (libseccomp's names for them).
BY_ARCHITECTURE: dict[tuple[str, ...], tuple[str, ...]] = {
    ("amd64", "x32"): ("arch_prctl",),
    ("amd64", "x32", "x86"): ("modify_ldt",),
    ("arm", "arm64"): ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
                       "set_tls"),
    ("ppc64le",): ("sync_file_range2", "swapcontext"),
    ("s390", "s390x"): ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    ("riscv64",): ("riscv_flush_icache",),
}

# What a capability lets a container call, as Docker grants it with --cap-add.
BY_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": (
        "mount", "umount", "umount2", "mount_setattr", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
        "fspick", "unshare", "setns", "clone", "clone3", "sethostname", "setdomainname", "quotactl", "quotactl_fd",
        "bpf", "perf_event_open", "fanotify_init", "lookup_dcookie", "syslog", "lsm_get_self_attr",
        "lsm_set_self_attr", "lsm_list_modules",
    ),
    "CAP_SYS_PTRACE": ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "set_mempolicy", "mbind", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}

# The rules that look at arguments. clone's flags are its first argument, except on s390 where
# the stack pointer comes first.
_NO_NAMESPACES = Arg(index=0, value=NAMESPACE_FLAGS, value_two=0, op="SCMP_CMP_MASKED_EQ")
_CONDITIONAL: tuple[Rule, ...] = (
    Rule(("socket",), args=(Arg(0, AF_ALG, op="SCMP_CMP_LT"),)),
    Rule(("socket",), args=(Arg(0, AF_NFC, op="SCMP_CMP_EQ"),)),
    Rule(("socket",), args=(Arg(0, AF_VSOCK, op="SCMP_CMP_GT"),)),
    *(Rule(("personality",), args=(Arg(0, value, op="SCMP_CMP_EQ"),)) for value in PERSONALITIES),
    Rule(("clone",), args=(_NO_NAMESPACES,), unless=When(caps=("CAP_SYS_ADMIN",), arches=("s390", "s390x"))),
    Rule(("clone",), args=(Arg(1, NAMESPACE_FLAGS, 0, "SCMP_CMP_MASKED_EQ"),), when=When(arches=("s390", "s390x")),
         unless=When(caps=("CAP_SYS_ADMIN",))),
    # No clone3 without CAP_SYS_ADMIN: its flags sit in memory, where seccomp cannot look. ENOSYS
    # rather than EPERM makes the C libraries fall back to clone, whose flags are checked above.
    Rule(("clone3",), action="SCMP_ACT_ERRNO", errno=ENOSYS, unless=When(caps=("CAP_SYS_ADMIN",))),
)

DEFAULT_PROFILE = Profile(
    default_action="SCMP_ACT_ERRNO",
    default_errno=EPERM,
    rules=(
        Rule(ALLOWED),
        Rule(TRACING, when=When(min_kernel=(4, 8))),
        *(Rule(names, when=When(arches=arches)) for arches, names in BY_ARCHITECTURE.items()),
        *_CONDITIONAL,
        *(Rule(names, when=When(caps=(cap,))) for cap, names in BY_CAPABILITY.items()),
    ),
)
