"""Rootless mode: an ordinary user's hostrt runs inside that user's own user namespace.

As Podman does, one long-lived holder process (holder.py) owns a user namespace, mapped with
the user's /etc/subuid and /etc/subgid ranges (container uid 0 is the user), and a mount
namespace. Every hostrt command of that user joins both at its very start, while it is
still single-threaded, and is then "root" there: it can mount overlays, and the runtime it
starts creates the container's other namespaces. The engine server and the shared monitor
are started by commands that already joined, so they live there too.

This module is imported by every command: it holds only what the start needs (os, sys).
"""

from __future__ import annotations

import os
import sys

# Set in a process once it joined: the user's uid outside (the namespace's root is that user).
UID_VARIABLE = "HOSTRT_ROOTLESS_UID"
DISABLE_VARIABLE = "HOSTRT_ROOTLESS"  # "0": never join (commands fail as they would without it)
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
PID_FILE = "pause.pid"  # the holder's pid and start time (holder.py)


class RootlessError(Exception):
    """The user's rootless namespace could not be made or joined (one line for the user)."""


def active() -> bool:
    """True in a process that joined the rootless namespace (or was started by one)."""
    return UID_VARIABLE in os.environ and os.geteuid() == 0 and in_user_namespace()


def in_user_namespace() -> bool:
    """Whether this process's uids are mapped (a user namespace other than the host's)."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def user_uid() -> int:
    """The uid of the user hostrt runs for, outside any namespace."""
    value = os.environ.get(UID_VARIABLE)
    if value is not None and value.isdigit() and os.geteuid() == 0:
        return int(value)
    return os.geteuid()


def wanted() -> bool:
    """An unprivileged Linux user's command that has not joined yet."""
    return (sys.platform.startswith("linux") and os.geteuid() != 0
            and os.environ.get(DISABLE_VARIABLE, "1") != "0" and UID_VARIABLE not in os.environ)


def stays_outside(args: list[str]) -> bool:
    """Commands that drive VMs (`machine ...`, `--backend lightvm`) run as the user itself,
    outside the namespace: there libvirt sees uid 0 and looks for the system daemon."""
    if args[:1] == ["machine"]:
        return True
    return any(arg == "--backend=lightvm" or (arg == "--backend" and following == "lightvm")
               for arg, following in zip(args, [*args[1:], ""]))


def state_dir() -> str:
    """Where the holder's pid and lock live: `rootless/` in hostrt's run root for this user
    (gone at reboot, as the holder is). Computed as hostrt.paths.run_root does for an
    ordinary user, without importing it (dataclasses, pathlib: on every command's path);
    tests/rootless/test_units.py keeps the two equal."""
    environ = os.environ
    if environ.get("HOSTRT_RUN_ROOT"):
        base = environ["HOSTRT_RUN_ROOT"]
    elif environ.get("HOSTRT_ROOT"):
        base = f"{environ['HOSTRT_ROOT']}/run"
    elif environ.get("XDG_RUNTIME_DIR"):
        base = f"{environ['XDG_RUNTIME_DIR']}/hostrt"
    else:
        import tempfile

        base = f"{tempfile.gettempdir()}/hostrt-{user_uid()}"
    return f"{base}/rootless"


def _setns(fd: int, flag: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, flag)
        return
    from backends.linux_native import syscalls

    syscalls.setns(fd, flag)


def start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()[19].decode()  # field 22


def find(directory: str) -> tuple[int, tuple[int, int]] | None:
    """The live holder's pid and open fds of its user and mount namespaces, or None."""
    try:
        with open(os.path.join(directory, PID_FILE)) as f:
            pid_text, _, started = f.read().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    try:
        user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(user)
        return None
    if start_time(pid) != started:  # checked after opening: the fds are the holder's
        os.close(user)
        os.close(mnt)
        return None
    return pid, (user, mnt)


def enter() -> None:
    """Join the user's rootless namespaces, making the holder first if there is none.
    Must run before any thread exists (setns of a user namespace requires it)."""
    directory = state_dir()
    found = find(directory)
    if found is None:
        from hostrt.rootless import holder

        found = holder.ensure(directory)
    pid, fds = found
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    uid = os.geteuid()
    try:
        _setns(fds[0], CLONE_NEWUSER)
        _setns(fds[1], CLONE_NEWNS)
    except OSError as err:
        raise RootlessError(f"cannot join the rootless namespace of process {pid}: {err.strerror}") from None
    finally:
        for fd in fds:
            os.close(fd)
    os.environ[UID_VARIABLE] = str(uid)
    try:
        os.chdir(cwd)  # setns of a mount namespace moves the cwd to its root
    except OSError:
        os.chdir("/")
