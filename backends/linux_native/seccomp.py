"""A container's seccomp filter: linux.seccomp compiled once per profile, loaded with seccomp(2)
as a process's last step before execve.

Compiling Docker's default allow list with libseccomp (~360 syscalls for x86_64 and its x86
and x32 ABIs) costs ~12 ms here, a large share of a `create`, and gives the same program
for every container with that profile. So the program is kept in ROOT/@seccomp/, named by a
hash of the profile, the machine, the kernel release and libseccomp's version (all that the
compiled program depends on), and a later `create` or `exec` loads it from there: a hash and
a read, without libseccomp's kernel probe and without importing ctypes. The filter is built
before the fork (libseccomp cannot be loaded from inside the container's root) and loaded by
the container's process itself.
"""

from __future__ import annotations

import _ctypes

from backends.linux_native import fastos as os
from backends.linux_native import jsonio, syscalls
from backends.linux_native.errors import ConfigError
from backends.linux_native.log import LOG

CACHE_DIR = "@seccomp"  # '@' is not a container id character: no container can take this name
_MAX_PROGRAM = 4096 * 8  # BPF_MAXINSNS instructions of 8 bytes

# linux.seccomp.flags -> seccomp(2) SECCOMP_SET_MODE_FILTER flags
FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}


class Filter:
    """A compiled program and the flags to load it with."""

    __slots__ = ("program", "flags")

    def __init__(self, program: bytes, flags: int) -> None:
        self.program, self.flags = program, flags

    def load(self) -> None:
        syscalls.seccomp_set_filter(self.program, self.flags)


def preload() -> None:
    """Load libseccomp now, in a long-lived process: its forks (hostrt-runtime in-process) then
    compile filters without loading it each time. Its probe of the kernel's seccomp API (a
    thread that enters strict mode) stays in the forks, as in a runtime process of its own."""
    try:
        _digest("")  # imports the hash module once, here
        _libseccomp_version()
        from backends.linux_native import seccomp_compile

        seccomp_compile.library()
    except Exception:  # noqa: BLE001 - reported when a container asks for seccomp
        pass


def build(raw: dict, root: str | None = None) -> Filter:
    """The filter for a linux.seccomp section; compiled programs are kept under ROOT."""
    if raw.get("listenerPath"):
        raise ConfigError("seccomp user notification (listenerPath) is not supported")
    flags = 0
    for flag in raw.get("flags") or ():
        if flag not in FLAGS:
            raise ConfigError(f"seccomp flag {flag!r} is not supported")
        flags |= FLAGS[flag]
    machine = os.uname()
    key = _digest(f"{jsonio.dumps(raw)}\0{machine.machine}\0{machine.release}\0{_libseccomp_version()}")
    directory = os.path.join(root, CACHE_DIR) if root else None
    program = _read_cached(directory, key) if directory else None
    if program is None:
        from backends.linux_native import seccomp_compile

        program = seccomp_compile.compile_filter(raw)
        if directory:
            _keep(directory, key, program)
    return Filter(program, flags)


def _digest(text: str) -> str:
    """sha256 from CPython's own module: hashlib would load OpenSSL (~2 ms) for one hash."""
    try:
        from _sha2 import sha256  # Python 3.12+
    except ImportError:
        try:
            from _sha256 import sha256  # Python 3.11
        except ImportError:
            from hashlib import sha256
    return sha256(text.encode()).hexdigest()


class _Version(_ctypes.Structure):
    _fields_ = [("major", syscalls.c_uint), ("minor", syscalls.c_uint), ("micro", syscalls.c_uint)]


_version: str | None = None


def _libseccomp_version() -> str:
    """libseccomp's version through _ctypes alone (see syscalls.py), for the cache key."""
    global _version
    if _version is None:
        from backends.linux_native.errors import RuntimeFailure

        try:
            handle = _ctypes.dlopen("libseccomp.so.2", _ctypes.RTLD_LOCAL)
        except OSError:
            raise RuntimeFailure("linux.seccomp needs libseccomp (Debian: apt-get install libseccomp2)") from None

        class Library:
            _handle = handle

        class VersionFunction(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = _ctypes.POINTER(_Version)

        found = VersionFunction(("seccomp_version", Library))().contents
        _version = f"{found.major}.{found.minor}.{found.micro}"
    return _version


def _read_cached(directory: str, key: str) -> bytes | None:
    """The kept program, or None if there is none or it is not a whole, sane program."""
    try:
        fd = os.open(os.path.join(directory, key), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if not 0 < size <= _MAX_PROGRAM or size % 8:
            return None
        program = os.pread(fd, size, 0)
        return program if len(program) == size else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _keep(directory: str, key: str, program: bytes) -> None:
    """Write then rename (a concurrent reader sees all or nothing); best effort, and a failed
    write (a full disk) leaves nothing behind."""
    tmp = os.path.join(directory, f".{key}.{os.getpid()}")
    try:
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            if os.write(fd, program) != len(program):
                raise OSError(28, "short write")
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(directory, key))
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        LOG.debug(f"seccomp: the compiled filter is not kept ({err}); it is compiled again next time")
