"""A container's network namespace as a file: made before the runtime runs, joined by path.

`unshare --net=FILE` bind-mounts the new namespace on FILE, so it outlives the process that
made it (as `ip netns add`, but under hostrt's own run directory). The same process
configures it: loopback, the container end of a veth pair (`eth0`), its address and default
route; the host end is moved out to the caller's namespace.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hostrt.errors import HostrtError

MNT_DETACH = 2


def create(path: Path, veth: str, address: str, prefix: int, gateway: str) -> None:
    """A configured namespace on `path`, its veth peer `veth` left (down) in our namespace."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch()
    commands = ["link set lo up",
                f"link add eth0 type veth peer name {veth} netns /proc/{os.getpid()}/ns/net",
                f"addr add {address}/{prefix} dev eth0",
                "link set eth0 up",
                f"route add default via {gateway} dev eth0"]
    done = subprocess.run(["unshare", f"--net={path}", "ip", "-batch", "-"], input="\n".join(commands) + "\n",
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise HostrtError(f"cannot set up the network namespace {path}: {done.stderr.strip()}")


def create_empty(path: Path) -> None:
    """A namespace on `path` with only its loopback up, for slirp4netns to add tap0 to."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch()
    done = subprocess.run(["unshare", f"--net={path}", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if done.returncode != 0:
        raise HostrtError(f"cannot set up the network namespace {path}: {done.stderr.strip()}")


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == target for line in mounts)


def remove(path: Path) -> None:
    """Unmount and delete the namespace file; the namespace ends with its last process."""
    if not path.exists():
        return
    if is_mounted(path):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)  # find_library would run `ldconfig -p` each time
        if libc.umount2(str(path).encode(), MNT_DETACH) != 0:
            raise HostrtError(f"cannot unmount {path}: {os.strerror(ctypes.get_errno())}")
    path.unlink(missing_ok=True)
