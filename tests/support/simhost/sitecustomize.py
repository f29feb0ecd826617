"""Makes this Linux Python behave like a macOS or Windows Python for hostrt (a test bootstrap).

Put this directory first on PYTHONPATH and set HOSTRT_SIMULATED_HOST to `darwin/arm64`,
`darwin/x86_64` or `win32/AMD64`: the interpreter then reports that host (sys.platform,
platform.uname/system/machine/release, os.uname) and lacks what that host's CPython lacks.
Nothing is added that the real one does not have.

Removed on both:
- Linux-only os/posix calls and constants (memfd_create, pidfd_open, xattrs, eventfd, splice,
  pipe2, sched affinity, fdatasync, O_PATH, O_TMPFILE...), real-time and Linux-only signals,
  netlink/packet sockets and SO_PEERCRED, ctypes' libc.so.6;
- the Linux kernel's files for the project's code: /proc, /sys, /run, /dev/kvm, /dev/fuse,
  /dev/net, /etc/subuid, /etc/subgid do not exist.
Removed on win32 besides:
- the POSIX modules (fcntl, termios, tty, pty, resource, pwd, grp, posix, syslog...), every os
  function the `nt` module of Python 3.11 lacks (fork, geteuid/getuid, fchmod, getpgid, setsid,
  killpg, uname, WNOHANG...), the POSIX signals (SIGHUP, SIGKILL, SIGUSR1, SIGPIPE, SIGCHLD,
  SIGWINCH...) and signal's timers and masks, AF_UNIX and fd passing.
Behaving as on Windows:
- os.kill: CTRL_C_EVENT (0) and CTRL_BREAK_EVENT reach the process as Ctrl-C, any other number
  terminates it; there is no signal-0 probe. Popen.kill/terminate terminate, send_signal knows
  SIGTERM and the two CTRL events; a bare program name is found on PATH as NAME.exe.
- text files opened by the project's code without an encoding use the ANSI code page (cp1252).
- stand-ins where Windows' stdlib has modules this one lacks: `msvcrt.locking` (a byte-range
  lock per open file, refused to other open files of the same process too, as LockFile;
  OFD locks here) and the few `_winapi` calls asked of it (OpenProcess, GetExitCodeProcess,
  CloseHandle, NeedCurrentDirectoryForExePath).

Where the simulation ends: os.name, os.sep, os.pathsep and os.path stay POSIX (a Linux pathlib
cannot make or open Windows paths), and so does the file system (modes, symlinks, case):
Windows path *syntax* is checked through hostrt.host_paths with ntpath (tests/test_portability.py).
The stdlib's POSIX implementations (subprocess, tempfile, shutil...) keep the whole os they were
written against, standing in for their Windows ones. Third-party packages and the stdlib modules
that choose an implementation at import (subprocess, asyncio, urllib.request...) are imported
under the real platform: their portability is their own CI's business, hostrt's is under test.
"""

from __future__ import annotations

import os
import sys
import types

_PROFILE = os.environ.get("HOSTRT_SIMULATED_HOST", "")


def _apply(profile: str) -> None:
    import builtins
    import ctypes
    import fcntl  # the msvcrt stand-in locks with it
    import importlib.abc
    import importlib.machinery
    import io
    import platform
    import signal
    import socket
    import subprocess  # noqa: F401  # the POSIX Popen, imported before anything is removed
    import sysconfig
    import types

    target, _, machine = profile.partition("/")
    if target not in ("darwin", "win32") or not machine:
        raise SystemExit(f"HOSTRT_SIMULATED_HOST={profile!r}: use darwin/arm64, darwin/x86_64 or win32/AMD64")
    windows = target == "win32"
    import _signal
    import _socket

    real = _RealState(windows)

    # -- the host's facts ------------------------------------------------------------------
    node = platform.node()
    if windows:
        uname = platform.uname_result("Windows", node, "10", "10.0.19045", machine)
        processor = "Intel64 Family 6 Model 154 Stepping 3, GenuineIntel"
        platform.win32_ver = lambda *args, **kwargs: ("10", "10.0.19045", "SP0", "Multiprocessor Free")
        platform.win32_edition = lambda: "Professional"
    else:
        release = "23.4.0"
        uname = platform.uname_result("Darwin", node, release, f"Darwin Kernel Version {release}", machine)
        processor = "arm" if machine == "arm64" else "i386"
        platform.mac_ver = lambda *args, **kwargs: ("14.4.1", ("", "", ""), machine)
    platform._uname_cache = uname  # type: ignore[attr-defined]
    platform._Processor.get = staticmethod(lambda: processor)  # type: ignore[attr-defined]
    platform.libc_ver = lambda *args, **kwargs: ("", "")

    def no_os_release() -> dict[str, str]:
        raise OSError("no os-release file on this host")

    platform.freedesktop_os_release = no_os_release

    # -- the Linux kernel's files, for code that is not the standard library's -------------
    _hide_linux_files(real, builtins, io, windows)

    # The standard library's POSIX code (subprocess, tempfile, shutil...) keeps the whole os it
    # was written against: it stands in for the Windows implementation this Python lacks.
    full_os = types.ModuleType("os", os.__doc__)
    full_os.__dict__.update(os.__dict__)
    real.full_os = full_os

    # -- os --------------------------------------------------------------------------------
    import posix

    for name in _LINUX_ONLY_OS:
        real.remove(os, name)
        real.remove(posix, name)  # what `from posix import *` gives (macOS' posix has neither)
    if windows:
        for name in dir(posix):
            if not name.startswith("__") and name not in _NT_HAS:
                real.remove(os, name)
        for name in ("fwalk", "environb", "getenvb", "get_exec_path_b"):
            real.remove(os, name)
        os.supports_dir_fd = set()
        os.supports_effective_ids = set()
        os.supports_fd = {os.stat, os.truncate}
        os.supports_follow_symlinks = {os.stat}
        real_kill = real.saved.get((id(os), "kill"), os.kill)

        def kill(pid: int, sig: int) -> None:
            """Windows: CTRL_C/CTRL_BREAK reach the process as a console event; any other value
            terminates it (TerminateProcess), signal 0 included."""
            real_kill(pid, _REAL_SIGNALS["SIGINT"] if sig in (0, 1) else _REAL_SIGNALS["SIGKILL"])

        os.kill = kill
        _windows_popen(real_kill)
    else:
        def darwin_uname() -> os.uname_result:
            return os.uname_result(tuple(uname)[:5])

        os.uname = darwin_uname

    # -- signals ---------------------------------------------------------------------------
    keep = _WINDOWS_SIGNALS if windows else None
    for module in (signal, _signal):
        for name in [n for n in dir(module) if n.startswith("SIG") and not n.startswith("SIG_")]:
            if name in _LINUX_ONLY_SIGNALS or (keep is not None and name not in keep):
                real.remove(module, name)
        for name in _LINUX_ONLY_SIGNAL_CALLS + (_POSIX_SIGNAL_CALLS if windows else ()):
            real.remove(module, name)
        if windows:
            module.SIGBREAK, module.CTRL_C_EVENT, module.CTRL_BREAK_EVENT = 21, 0, 1
            module.NSIG = 23
    import enum

    members = {n: v for n, v in signal.Signals.__members__.items() if hasattr(signal, n)}
    if windows:
        members["SIGBREAK"] = 21
    signal.Signals = enum.IntEnum("Signals", members, module="signal")  # type: ignore[misc]
    allowed = frozenset(int(v) for v in members.values())
    for module in (signal, _signal):
        real.wrap(module, "valid_signals", lambda original: (lambda: set(signal.Signals)))
        for call in ("signal", "getsignal", "raise_signal", "strsignal"):
            real.wrap(module, call, lambda original: _checked_signal(original, allowed))

    # -- sockets ---------------------------------------------------------------------------
    for module in (socket, _socket):
        for name in [n for n in dir(module) if n.startswith(_LINUX_ONLY_SOCKET_PREFIXES)]:
            real.remove(module, name)
        if windows:
            for name in [n for n in dir(module) if n.startswith(_POSIX_ONLY_SOCKET_PREFIXES)]:
                real.remove(module, name)
            for name in ("send_fds", "recv_fds", "sethostname"):
                real.remove(module, name)

    # -- native libraries ------------------------------------------------------------------
    real_cdll = ctypes.CDLL

    class CDLL(real_cdll):  # type: ignore[misc, valid-type]
        def __init__(self, name: str | None, *args: object, **kwargs: object) -> None:
            if name is None and windows:
                raise TypeError("expected str, bytes or os.PathLike object, not NoneType")
            if name is not None and (".so" in os.fspath(name) or "libc" in os.fspath(name)):
                raise OSError(f"{name}: cannot open shared object: this host has no Linux libc")
            super().__init__(name, *args, **kwargs)

    ctypes.CDLL = CDLL  # type: ignore[misc]
    import ctypes.util

    ctypes.util.find_library = lambda name: None

    # -- the standard library's own notes of what it found at import ----------------------
    import tempfile

    tempfile._O_TMPFILE_WORKS = False  # type: ignore[attr-defined]  # O_TMPFILE is Linux's
    if windows:
        class _WindowsConsoleIO(io.RawIOBase):  # the type of a console's stdio there; none is one here
            pass

        io._WindowsConsoleIO = _WindowsConsoleIO  # type: ignore[attr-defined]

    # -- modules this Python lacks, and stand-ins for what it has instead ------------------
    blocked = _WINDOWS_LACKS if windows else _DARWIN_LACKS
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    if windows:
        sys.modules["msvcrt"] = _msvcrt_stand_in(types, fcntl)
        sys.modules["_winapi"] = _winapi_stand_in(types, real_kill)
        import shutil

        if getattr(shutil, "_winapi", False) is None:  # Python 3.12+'s which() asks it on win32
            shutil._winapi = sys.modules["_winapi"]

    for module in list(sys.modules.values()):
        real.give_full_os(module)

    site_dirs = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    sys.meta_path.insert(0, _RealPlatformImports(real, site_dirs, importlib.abc, importlib.machinery))

    sys.platform = target  # last: every patch above ran under the real platform


class _RealState:
    """Every attribute this bootstrap removed or replaced, so an import can run without them."""

    def __init__(self, windows: bool) -> None:
        self.windows = windows
        self.saved: dict[tuple[int, str], object] = {}
        self.owners: dict[int, object] = {}
        self.replaced: list[tuple[object, str]] = []
        self.platform = sys.platform

    def remove(self, owner: object, name: str) -> None:
        if hasattr(owner, name):
            self.saved.setdefault((id(owner), name), getattr(owner, name))
            self.owners[id(owner)] = owner
            delattr(owner, name)

    def wrap(self, owner: object, name: str, make: object) -> None:
        if hasattr(owner, name):
            original = getattr(owner, name)
            self.saved.setdefault((id(owner), name), original)
            self.owners[id(owner)] = owner
            setattr(owner, name, make(original))  # type: ignore[operator]

    full_os: object = None

    def give_full_os(self, module: object) -> None:
        """A standard library module's `os` becomes the unreduced one (see above)."""
        origin = getattr(module, "__file__", None) or ""
        if not origin.startswith(_STDLIB) or "site-packages" in origin:
            return
        for name in ("os", "_os"):
            if getattr(module, name, None) is os:
                setattr(module, name, self.full_os)

    def swap(self) -> dict[tuple[int, str], object]:
        """Put the real attributes back; returns what to restore afterwards."""
        faked = {}
        for (owner_id, name), value in self.saved.items():
            owner = self.owners[owner_id]
            faked[(owner_id, name)] = getattr(owner, name, _MISSING)
            setattr(owner, name, value)
        return faked

    def unswap(self, faked: dict[tuple[int, str], object]) -> None:
        for (owner_id, name), value in faked.items():
            owner = self.owners[owner_id]
            if value is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


_MISSING = object()
_STDLIB = os.path.dirname(os.__file__)


class _RealPlatformImports:
    """A meta path finder: third-party packages and platform-choosing stdlib modules are
    executed under the real platform (their code is not under test)."""

    def __init__(self, real: _RealState, site_dirs: set[str], abc: object, machinery: object) -> None:
        self.real = real
        self.site_dirs = tuple(site_dirs)
        self.machinery = machinery
        self.depth = 0

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if self.depth:
            return None  # nested imports already run under the real platform
        spec = self.machinery.PathFinder.find_spec(name, path, target)  # type: ignore[attr-defined]
        if spec is None or spec.loader is None:
            return None
        origin = spec.origin or ""
        if name.partition(".")[0] not in _STDLIB_CHOOSING and not origin.startswith(self.site_dirs):
            return None
        spec.loader = _RealPlatformLoader(spec.loader, self)
        return spec

    def run_real(self, action: object) -> object:
        faked = self.real.swap()
        blocked = {name: sys.modules.pop(name) for name in list(sys.modules)
                   if sys.modules[name] is None or name in _STAND_INS}
        simulated, sys.platform = sys.platform, self.real.platform
        self.depth += 1
        try:
            return action()  # type: ignore[operator]
        finally:
            self.depth -= 1
            sys.platform = simulated
            for name, module in blocked.items():
                sys.modules[name] = module  # what the real platform imported stays with its importer
            self.real.unswap(faked)


class _RealPlatformLoader:
    def __init__(self, loader: object, finder: _RealPlatformImports) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: object) -> object:
        return self._finder.run_real(lambda: self._loader.create_module(spec))  # type: ignore[attr-defined]

    def exec_module(self, module: object) -> None:
        self._finder.run_real(lambda: self._loader.exec_module(module))  # type: ignore[attr-defined]
        self._finder.real.give_full_os(module)

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)


def _windows_popen(real_kill: object) -> None:
    """Popen on Windows: CreateProcess finds a bare program name on PATH with `.exe` appended;
    terminate() and kill() are TerminateProcess, send_signal() knows SIGTERM, CTRL_C_EVENT and
    CTRL_BREAK_EVENT only (the POSIX Popen asks for SIGKILL)."""
    import subprocess

    execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def create_process(self: subprocess.Popen, args: object, executable: object, *rest: object) -> None:
        program = args if isinstance(args, (str, bytes)) else next(iter(args), None)  # type: ignore[call-overload]
        if executable is None and isinstance(program, str) and "/" not in program and "." not in program:
            for directory in os.environ.get("PATH", "").split(os.pathsep):
                for candidate in (f"{directory}/{program}.exe", f"{directory}/{program}.EXE"):
                    if os.path.isfile(candidate):
                        executable = candidate
                        break
                if executable is not None:
                    break
        execute_child(self, args, executable, *rest)

    subprocess.Popen._execute_child = create_process  # type: ignore[attr-defined]

    def send_signal(self: subprocess.Popen, sig: int) -> None:
        if self.returncode is not None:
            return
        if sig == 15:
            self.terminate()
        elif sig in (0, 1):
            real_kill(self.pid, _REAL_SIGNALS["SIGINT"])  # type: ignore[operator]
        else:
            raise ValueError(f"Unsupported signal: {sig}")

    def terminate(self: subprocess.Popen) -> None:
        if self.returncode is None:
            try:
                real_kill(self.pid, _REAL_SIGNALS["SIGKILL"])  # type: ignore[operator]
            except ProcessLookupError:
                pass

    subprocess.Popen.send_signal = send_signal  # type: ignore[method-assign]
    subprocess.Popen.terminate = terminate  # type: ignore[method-assign]
    subprocess.Popen.kill = terminate  # type: ignore[method-assign]


def _checked_signal(original: object, allowed: frozenset[int]) -> object:
    def call(signum: int, *args: object) -> object:
        if int(signum) not in allowed:
            raise ValueError("invalid signal value")
        return original(signum, *args)  # type: ignore[operator]

    return call


_HIDDEN_PREFIXES = ("/proc", "/sys", "/run", "/dev/kvm", "/dev/fuse", "/dev/net", "/etc/subuid", "/etc/subgid")


def _project_caller() -> bool:
    """Whether the nearest caller outside the standard library is the project's (not a
    third-party package's)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if name != __file__ and (not name.startswith(_STDLIB) or "/site-packages/" in name):
            return "/site-packages/" not in name
        frame = frame.f_back
    return False


def _hide_linux_files(real: _RealState, builtins: object, io: object, windows: bool) -> None:
    """/proc, /sys and friends do not exist on this host for the project's code (the
    interpreter and the stdlib's own POSIX code paths still see the real kernel). On Windows a
    text file opened without an encoding is read and written in the ANSI code page (cp1252 on
    US and Western European Windows), not UTF-8."""
    import errno

    def hidden(path: object) -> bool:
        if isinstance(path, int):
            return False
        try:
            text = os.fsdecode(os.fspath(path))  # type: ignore[arg-type]
        except TypeError:
            return False
        if not text.startswith(_HIDDEN_PREFIXES):
            return False
        if not any(text == p or text.startswith(p + "/") for p in _HIDDEN_PREFIXES):
            return False
        return _project_caller()

    def guard(original: object) -> object:
        def call(path: object, *args: object, **kwargs: object) -> object:
            if hidden(path):
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", os.fsdecode(os.fspath(path)))  # type: ignore[arg-type]
            return original(path, *args, **kwargs)  # type: ignore[operator]

        return call

    def open_guard(original: object) -> object:
        checked = guard(original)

        def call(path: object, *args: object, **kwargs: object) -> object:
            mode = args[0] if args else kwargs.get("mode", "r")
            if (windows and "b" not in str(mode) and len(args) < 3 and kwargs.get("encoding") is None
                    and _project_caller()):
                kwargs["encoding"] = "cp1252"
            return checked(path, *args, **kwargs)  # type: ignore[operator]

        return call

    for owner, name in ((builtins, "open"), (io, "open")):
        real.wrap(owner, name, open_guard)
    for owner, name in ((os, "open"), (os, "stat"), (os, "lstat"), (os, "listdir"), (os, "scandir"),
                        (os, "access"), (os, "readlink")):
        real.wrap(owner, name, guard)


_STAND_INS = ("msvcrt", "_winapi")


def _winapi_stand_in(types: object, real_kill: object) -> object:
    """The few `_winapi` calls asked of it: a process handle (OpenProcess fails for a pid that
    does not exist, as ERROR_INVALID_PARAMETER), its exit code (STILL_ACTIVE while it runs)."""
    import errno

    module = types.ModuleType("_winapi")  # type: ignore[attr-defined]
    module.STILL_ACTIVE = 259
    module.PROCESS_ALL_ACCESS = 0x1FFFFF

    def open_process(access: int, inherit: bool, pid: int) -> int:
        try:
            real_kill(pid, 0)  # type: ignore[operator]
        except ProcessLookupError:
            raise OSError(errno.EINVAL, "The parameter is incorrect") from None
        except PermissionError:
            pass  # PROCESS_QUERY_LIMITED_INFORMATION is granted across users
        return pid

    def exit_code(handle: int) -> int:
        try:
            real_kill(handle, 0)  # type: ignore[operator]
        except ProcessLookupError:
            return 0
        except PermissionError:
            pass
        return module.STILL_ACTIVE

    module.OpenProcess = open_process
    module.GetExitCodeProcess = exit_code
    module.CloseHandle = lambda handle: None
    module.NeedCurrentDirectoryForExePath = lambda name: True
    return module


def _msvcrt_stand_in(types: object, fcntl: types.ModuleType) -> object:
    """msvcrt.locking: a byte-range lock of the open file (from its current position), refused
    to any other open file, this process's included, as Windows' LockFile is. OFD locks have
    exactly that scope on Linux."""
    import struct
    import time

    module = types.ModuleType("msvcrt")  # type: ignore[attr-defined]
    module.LK_UNLCK, module.LK_LOCK, module.LK_NBLCK, module.LK_RLCK, module.LK_NBRLCK = 0, 1, 2, 3, 4

    def locking(fd: int, mode: int, nbytes: int) -> None:
        start = os.lseek(fd, 0, os.SEEK_CUR)
        kind = fcntl.F_UNLCK if mode == module.LK_UNLCK else fcntl.F_WRLCK
        request = struct.pack("hhqqi4x", kind, os.SEEK_SET, start, nbytes, 0)
        tries = 10 if mode in (module.LK_LOCK, module.LK_RLCK) else 1
        for attempt in range(tries):
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
                return
            except OSError:
                if mode == module.LK_UNLCK:
                    raise PermissionError(13, "Permission denied") from None
                if attempt + 1 < tries:
                    time.sleep(1.0)  # LK_LOCK: ten tries a second apart, then EDEADLOCK
        raise PermissionError(13, "Permission denied")  # what msvcrt raises for a held range

    module.locking = locking
    return module


# Names of the Linux `posix` module that macOS' (and Windows') lack.
_LINUX_ONLY_OS = (
    "memfd_create", "pidfd_open", "eventfd", "eventfd_read", "eventfd_write", "splice", "copy_file_range", "pipe2",
    "posix_fallocate", "posix_fadvise", "fdatasync", "getrandom", "getresuid", "getresgid", "setresuid", "setresgid",
    "getxattr", "setxattr", "listxattr", "removexattr", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
    "sched_setparam", "sched_getscheduler", "sched_setscheduler", "sched_rr_get_interval", "sched_param",
    "unshare", "setns", "timerfd_create", "O_PATH", "O_TMPFILE", "O_DIRECT", "O_NOATIME", "O_LARGEFILE", "O_RSYNC",
    "P_PIDFD", "RTLD_DEEPBIND", "SCHED_BATCH", "SCHED_IDLE", "SCHED_RESET_ON_FORK", "ST_APPEND", "ST_MANDLOCK",
    "ST_NOATIME", "ST_NODEV", "ST_NODIRATIME", "ST_NOEXEC", "ST_RELATIME", "ST_SYNCHRONOUS", "ST_WRITE",
    *(f"{p}{s}" for p in ("EFD_", "GRND_", "XATTR_", "SPLICE_F_", "RWF_", "POSIX_FADV_")
      for s in ("CLOEXEC", "NONBLOCK", "SEMAPHORE", "RANDOM", "CREATE", "REPLACE", "SIZE_MAX", "MORE", "MOVE",
                "APPEND", "DSYNC", "HIPRI", "NOWAIT", "SYNC", "DONTNEED", "NOREUSE", "NORMAL", "SEQUENTIAL",
                "WILLNEED")),
    *(name for name in dir(os) if name.startswith(("MFD_", "CLONE_", "TFD_", "PIDFD_"))),
)

# What the Windows `nt` module has (Python 3.11; 3.12 adds a few, 3.13 fchmod/lchmod: the oldest counts).
_NT_HAS = frozenset((
    "DirEntry", "F_OK", "R_OK", "W_OK", "X_OK", "O_APPEND", "O_CREAT", "O_EXCL", "O_RDONLY", "O_RDWR", "O_TRUNC",
    "O_WRONLY", "TMP_MAX", "_exit", "abort", "access", "chdir", "chmod", "close", "closerange", "cpu_count",
    "device_encoding", "dup", "dup2", "environ", "error", "execv", "execve", "fspath", "fstat", "fsync", "ftruncate",
    "get_inheritable", "get_terminal_size", "getcwd", "getcwdb", "getlogin", "getpid", "getppid", "isatty", "kill",
    "link", "listdir", "lseek", "lstat", "mkdir", "open", "pipe", "putenv", "read", "readlink", "remove", "rename",
    "replace", "rmdir", "scandir", "set_inheritable", "stat", "stat_result", "statvfs_result", "strerror", "symlink",
    "system", "terminal_size", "times", "times_result", "truncate", "umask", "unlink", "unsetenv", "urandom", "utime",
    "waitpid", "waitstatus_to_exitcode", "write", "_path_normpath", "_have_functions",
))

# Signals of Linux alone; on Windows only these six (and SIGBREAK) exist.
_LINUX_ONLY_SIGNALS = frozenset(("SIGCLD", "SIGPOLL", "SIGPWR", "SIGRTMIN", "SIGRTMAX", "SIGSTKFLT"))
_WINDOWS_SIGNALS = frozenset(("SIGABRT", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM", "SIGBREAK"))
_LINUX_ONLY_SIGNAL_CALLS = ("pidfd_send_signal", "sigtimedwait", "sigwaitinfo")
_POSIX_SIGNAL_CALLS = ("alarm", "getitimer", "setitimer", "pause", "pthread_kill", "pthread_sigmask", "sigpending",
                       "sigwait", "siginterrupt", "ITIMER_PROF", "ITIMER_REAL", "ITIMER_VIRTUAL", "ItimerError",
                       "Sigmasks", "SIG_BLOCK", "SIG_UNBLOCK", "SIG_SETMASK", "struct_siginfo")
_REAL_SIGNALS = {"SIGINT": 2, "SIGKILL": 9}

_LINUX_ONLY_SOCKET_PREFIXES = ("AF_NETLINK", "NETLINK_", "AF_PACKET", "PACKET_", "SO_PEERCRED", "SO_PASSCRED",
                               "SCM_CREDENTIALS", "SOCK_CLOEXEC", "SOCK_NONBLOCK", "AF_VSOCK", "VMADDR_", "SO_VM_",
                               "AF_ALG", "ALG_", "SO_MARK", "SO_BINDTODEVICE", "TCP_USER_TIMEOUT")
_POSIX_ONLY_SOCKET_PREFIXES = ("AF_UNIX", "SCM_", "CMSG_", "MSG_NOSIGNAL", "MSG_CMSG_CLOEXEC", "SO_REUSEPORT")

_DARWIN_LACKS = ("ossaudiodev", "spwd")
_WINDOWS_LACKS = ("fcntl", "termios", "tty", "pty", "resource", "grp", "pwd", "posix", "syslog", "crypt",
                  "_posixshmem", "readline", "curses", "_curses", "spwd", "nis", "ossaudiodev", "_posixsubprocess")

# Standard library modules that pick their implementation by platform when imported.
_STDLIB_CHOOSING = frozenset(("subprocess", "asyncio", "multiprocessing", "concurrent", "urllib", "http", "uuid",
                              "mimetypes", "getpass", "webbrowser", "selectors", "ssl", "shutil", "tempfile", "ctypes",
                              "logging", "email", "pdb", "_pytest", "pytest", "pluggy"))


if _PROFILE:
    try:
        _apply(_PROFILE)
    except BaseException:  # site.py would only warn and go on as Linux
        import traceback

        traceback.print_exc()
        os._exit(3)
