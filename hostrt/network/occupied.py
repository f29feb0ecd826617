"""What the host's IPv4 space already holds: every route (all routing tables) and address.

A bridge subnet that overlaps any of them gives the host two ways to the same addresses,
and whichever the kernel prefers wins: connections to the loser's containers are reset.
Other engines (Docker's docker0, Podman's cni-podman0, libvirt's virbr0) show up here as
the routes and addresses of their bridges, so checking against this list is how hostrt
stays out of their way without knowing any of them by name.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hostrt.errors import HostrtError
from hostrt.locks import file_lock

# Routes that reserve no addresses: the default route, and multicast (224/4, never a bridge subnet).
_IGNORED_TYPES = {"multicast"}
HOST_LOCK = Path(os.environ.get("HOSTRT_SUBNET_LOCK", "/run/hostrt-subnets.lock"))


@dataclass(frozen=True)
class Occupant:
    """One route or address of the host; `device` is its interface ("" for e.g. a blackhole route)."""

    network: ipaddress.IPv4Network
    device: str
    kind: str  # "route" or "address"
    table: str = "main"

    def __str__(self) -> str:
        where = f" on {self.device}" if self.device else ""
        table = f" (table {self.table})" if self.kind == "route" and self.table != "main" else ""
        return f"{self.kind} {self.network}{where}{table}"


def _ip_json(*args: str) -> list[dict]:
    try:
        done = subprocess.run(["ip", "-j", "-4", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise HostrtError("cannot read the host's routes: `ip` (iproute2) is not installed") from None
    if done.returncode != 0:
        raise HostrtError(f"cannot read the host's routes: ip {' '.join(args)}: {done.stderr.strip()}")
    try:
        return json.loads(done.stdout or "[]")
    except ValueError:
        raise HostrtError(f"cannot read the host's routes: ip {' '.join(args)} printed no JSON") from None


def host_occupants() -> list[Occupant]:
    """Every IPv4 route of every table (but default routes) and every IPv4 address with its prefix."""
    found: list[Occupant] = []
    for route in _ip_json("route", "show", "table", "all"):
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("type") in _IGNORED_TYPES:
            continue
        try:
            network = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if network.prefixlen == 0:
            continue
        found.append(Occupant(network, route.get("dev", ""), "route", str(route.get("table", "main"))))
    for link in _ip_json("addr", "show"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                network = ipaddress.ip_network(f"{info['local']}/{info.get('prefixlen', 32)}", strict=False)
                found.append(Occupant(network, link.get("ifname", ""), "address"))
    return found


def overlapping(subnet: str, occupants: list[Occupant], own_device: str = "") -> list[Occupant]:
    """The occupants that overlap `subnet`, except those on `own_device` (the network's own bridge)."""
    net = ipaddress.ip_network(subnet)
    return [o for o in occupants if o.network.overlaps(net) and (not own_device or o.device != own_device)]


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """Held from choosing a subnet until its bridge (and so its route) exists: two hostrt roots
    creating networks at once must not both take the same free subnet. Only root makes
    bridges; without access to the lock's directory there is nothing to serialise."""
    if not os.access(HOST_LOCK.parent, os.W_OK):
        yield
        return
    with file_lock(HOST_LOCK):
        yield
