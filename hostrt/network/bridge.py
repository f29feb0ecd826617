"""The Linux bridge of a network: created with its gateway address, deleted when unused.

A bridge hostrt makes carries the alias `hostrt` (`ip link set … alias`, read back from
/sys/class/net/NAME/ifalias). Only a bridge so marked is ever joined or deleted: a name
set to another engine's bridge (HOSTRT_BRIDGE=docker0) must not take it over, and
`rm`/`system prune` must not delete it. A bridge made before the mark existed is adopted
when it carries exactly the network's gateway address.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

from hostrt.errors import HostrtError
from hostrt.network.networks import Network

MARK = "hostrt"


def exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def is_ours(name: str) -> bool:
    try:
        return Path("/sys/class/net", name, "ifalias").read_text().strip() == MARK
    except OSError:
        return False


def ip_batch(commands: list[str], netns: str | None = None) -> subprocess.CompletedProcess[str]:
    """One `ip -batch` process for several changes (each `ip` start costs ~2 ms; a container needs a few)."""
    argv = ["ip", "-batch", "-"]
    if netns is not None:
        argv = ["nsenter", f"--net={netns}", *argv]
    return subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True)


def _carries_gateway(network: Network) -> bool:
    done = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", network.bridge], capture_output=True, text=True)
    wanted = str(ipaddress.ip_interface(f"{network.gateway}/{network.prefix}"))
    return any(f" {wanted} " in f" {line} " for line in done.stdout.splitlines())


def ensure(network: Network) -> None:
    """Create the bridge with the gateway address and bring it up, unless it is there (and ours)."""
    if exists(network.bridge):
        if is_ours(network.bridge):
            return
        if _carries_gateway(network) and Path("/sys/class/net", network.bridge, "bridge").is_dir():
            ip_batch([f"link set {network.bridge} alias {MARK}"])
            return
        raise HostrtError(f"cannot use bridge {network.bridge} for network {network.name}: an interface of that "
                          "name exists and was not made by hostrt")
    done = ip_batch([f"link add {network.bridge} type bridge",
                     f"link set {network.bridge} alias {MARK}",
                     f"addr add {network.gateway}/{network.prefix} dev {network.bridge}",
                     f"link set {network.bridge} up"])
    if done.returncode != 0 and not is_ours(network.bridge):
        raise HostrtError(f"cannot create bridge {network.bridge}: {done.stderr.strip()}")
    _enable_forwarding()


def delete(name: str) -> None:
    """Delete an interface hostrt made by name (a container's veth)."""
    if exists(name):
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def delete_bridge(name: str) -> None:
    """Delete a network's bridge, if it is hostrt's (see the module's docstring)."""
    if exists(name) and is_ours(name):
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def _enable_forwarding() -> None:
    """Outbound traffic from containers is routed by the host, as with docker (HOSTRT_IP_FORWARD=0: leave it)."""
    if os.environ.get("HOSTRT_IP_FORWARD", "1") == "0":
        return
    try:
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    except OSError:
        pass  # not allowed here: containers reach each other and the host, not beyond
