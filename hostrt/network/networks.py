"""Network definitions: the default `bridge` (from settings) and user networks (one JSON file each).

A network is a Linux bridge with a subnet whose first address is the gateway. The default
network's bridge comes and goes with its containers; a user network's bridge lives from
`network create` to `network rm`. Subnets of user networks are picked from a pool so
they overlap neither each other nor any route the host already has.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import socket
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hostrt.errors import HostrtError, NotFoundError, UsageError
from hostrt.locks import file_lock

DEFAULT_NETWORK = "bridge"
RESERVED = {"bridge", "host", "none"}
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Network:
    """One bridge network; `builtin` marks the default one, whose bridge follows its leases."""

    name: str
    bridge: str
    subnet: str
    gateway: str
    builtin: bool = False
    created_at: float = field(default_factory=time.time)

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen


def _network_from(subnet: str, name: str, bridge: str, builtin: bool = False) -> Network:
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as err:
        raise UsageError(f"invalid subnet {subnet!r}: {err}") from None
    if net.version != 4 or net.prefixlen > 29:
        raise UsageError(f"invalid subnet {subnet!r}: an IPv4 network of /29 or larger is needed")
    return Network(name, bridge, str(net), str(next(net.hosts())), builtin)


def default_network() -> Network:
    """`bridge`: HOSTRT_BRIDGE (hostrt0) on HOSTRT_BRIDGE_SUBNET (10.88.0.0/16), as docker0 on 172.17/16."""
    return _network_from(os.environ.get("HOSTRT_BRIDGE_SUBNET", "10.88.0.0/16"), DEFAULT_NETWORK,
                         os.environ.get("HOSTRT_BRIDGE", "hostrt0"), builtin=True)


def host_routes() -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations of the host's main routing table (except the default route)."""
    routes = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return routes
    for line in lines:
        fields = line.split()
        dest, mask = (socket.inet_ntoa(struct.pack("<I", int(f, 16))) for f in (fields[1], fields[7]))
        if mask != "0.0.0.0":
            routes.append(ipaddress.ip_network(f"{dest}/{mask}", strict=False))
    return routes


class NetworkStore:
    """`<root>/networks/<name>.json` for user networks, plus the leases of every network."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with file_lock(self.directory / ".networks.lock"):
            yield

    def get(self, name: str) -> Network:
        if name == DEFAULT_NETWORK:
            return default_network()
        try:
            return Network(**json.loads(self._path(name).read_text()))
        except FileNotFoundError:
            raise NotFoundError(f"network {name} not found") from None

    def all(self) -> list[Network]:
        users = [Network(**json.loads(p.read_text())) for p in sorted(self.directory.glob("*.json"))
                 if not p.name.endswith(".leases.json")]
        return [default_network(), *users]

    def create(self, name: str, subnet: str | None = None) -> Network:
        """A new user network; its bridge is made by the caller (see `bridge.ensure`)."""
        if name in RESERVED or not _NAME.match(name):
            raise UsageError(f"invalid network name {name!r}: use letters, digits, '_', '.', '-' and not "
                             f"{', '.join(sorted(RESERVED))}")
        # the root is in the hash: two hostrt roots (test runs) may both have a network called "front"
        bridge = "hrt-" + hashlib.sha256(f"{self.directory.resolve()}/{name}".encode()).hexdigest()[:10]
        with self._locked():
            if self._path(name).exists():
                raise HostrtError(f"network {name} already exists")
            used = [ipaddress.ip_network(n.subnet) for n in self.all()] + host_routes()
            if subnet is not None:
                network = _network_from(subnet, name, bridge)
                clash = [str(u) for u in used if u.overlaps(ipaddress.ip_network(network.subnet))]
                if clash:
                    raise UsageError(f"subnet {network.subnet} overlaps {clash[0]}, already in use")
            else:
                network = _network_from(self._free_subnet(used), name, bridge)
            self._write(network)
        return network

    @staticmethod
    def _free_subnet(used: list[ipaddress.IPv4Network]) -> str:
        pool = ipaddress.ip_network(os.environ.get("HOSTRT_NETWORK_POOL", "10.89.0.0/16"))
        for candidate in pool.subnets(new_prefix=max(24, pool.prefixlen)):
            if not any(candidate.overlaps(u) for u in used):
                return str(candidate)
        raise HostrtError(f"no free /24 left in the network pool {pool}; pass --subnet")

    def _write(self, network: Network) -> None:
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".network-")
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(network), out)
        os.replace(temp, self._path(network.name))

    def remove(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
