"""The Linux bridge of a network: created with its gateway address, deleted when unused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hostrt.errors import HostrtError
from hostrt.network.networks import Network


def exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def ip_batch(commands: list[str], netns: str | None = None) -> subprocess.CompletedProcess[str]:
    """One `ip -batch` process for several changes (each `ip` start costs ~2 ms; a container needs a few)."""
    argv = ["ip", "-batch", "-"]
    if netns is not None:
        argv = ["nsenter", f"--net={netns}", *argv]
    return subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True)


def ensure(network: Network) -> None:
    """Create the bridge with the gateway address and bring it up, unless it is there."""
    if exists(network.bridge):
        return
    done = ip_batch([f"link add {network.bridge} type bridge",
                     f"addr add {network.gateway}/{network.prefix} dev {network.bridge}",
                     f"link set {network.bridge} up"])
    if done.returncode != 0 and not exists(network.bridge):
        raise HostrtError(f"cannot create bridge {network.bridge}: {done.stderr.strip()}")
    _enable_forwarding()


def delete(name: str) -> None:
    if exists(name):
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def _enable_forwarding() -> None:
    """Outbound traffic from containers is routed by the host, as with docker (HOSTRT_IP_FORWARD=0: leave it)."""
    if os.environ.get("HOSTRT_IP_FORWARD", "1") == "0":
        return
    try:
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    except OSError:
        pass  # not allowed here: containers reach each other and the host, not beyond
