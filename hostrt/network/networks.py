"""Network definitions: the default `bridge` and user networks (one JSON record each).

A network is a Linux bridge with a subnet whose first address is the gateway. The default
network's bridge comes and goes with its containers; a user network's bridge lives from
`network create` to `network rm`. A subnet not given is taken from the address pools
(`pools`) where it overlaps no other network and no route or address of the host
(`occupied`), and kept in the record: the default network's in `bridge.json`, chosen at
its first use, so its containers keep their addresses.

A subnet can become taken after it was chosen (another engine brings up a bridge with
a fixed subnet, or the host reboots and another engine starts first). `usable` finds that
before a container joins: the default network, unused and without its bridge, moves to
a free subnet; any other network refuses the container with the interface in its way.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hostrt.errors import HostrtError, NotFoundError, UsageError
from hostrt.locks import file_lock
from hostrt.network import occupied, pools
from hostrt.network.ipam import Leases

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


def default_bridge() -> str:
    return os.environ.get("HOSTRT_BRIDGE", "hostrt0")


def host_routes() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of the host's routes (all tables) and addresses."""
    return [o.network for o in occupied.host_occupants()]


class SubnetTakenError(HostrtError):
    """A network's subnet overlaps a route or address of the host that is not its own bridge's."""


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

    def _read(self, name: str) -> Network | None:
        try:
            return Network(**json.loads(self._path(name).read_text()))
        except FileNotFoundError:
            return None

    def default(self) -> Network:
        """`bridge` on HOSTRT_BRIDGE (hostrt0): HOSTRT_BRIDGE_SUBNET if set (as dockerd's --bip),
        else the subnet in its record, chosen from the pools the first time it is needed."""
        bridge = default_bridge()
        if os.environ.get("HOSTRT_BRIDGE_SUBNET"):
            return _network_from(os.environ["HOSTRT_BRIDGE_SUBNET"], DEFAULT_NETWORK, bridge, builtin=True)
        record = self._read(DEFAULT_NETWORK)
        if record is None:
            with self._locked():
                record = self._read(DEFAULT_NETWORK)
                if record is None:
                    record = self._choose(DEFAULT_NETWORK, bridge, occupied.host_occupants(), builtin=True)
        return Network(**{**asdict(record), "bridge": bridge})

    def get(self, name: str) -> Network:
        if name == DEFAULT_NETWORK:
            return self.default()
        record = self._read(name)
        if record is None:
            raise NotFoundError(f"network {name} not found")
        return record

    def _users(self) -> list[Network]:
        return [Network(**json.loads(p.read_text())) for p in sorted(self.directory.glob("*.json"))
                if not p.name.endswith(".leases.json") and p.stem not in RESERVED]

    def all(self) -> list[Network]:
        return [self.default(), *self._users()]

    def create(self, name: str, subnet: str | None = None) -> Network:
        """A new user network; its bridge is made by the caller (see `bridge.ensure`), which
        holds `occupied.host_lock()` until then, so that no other root takes the same subnet."""
        if name in RESERVED or not _NAME.match(name):
            raise UsageError(f"invalid network name {name!r}: use letters, digits, '_', '.', '-' and not "
                             f"{', '.join(sorted(RESERVED))}")
        # the root is in the hash: two hostrt roots (test runs) may both have a network called "front"
        bridge = "hrt-" + hashlib.sha256(f"{self.directory.resolve()}/{name}".encode()).hexdigest()[:10]
        occupants = occupied.host_occupants()
        with self._locked():
            if self._path(name).exists():
                raise HostrtError(f"network {name} already exists")
            if subnet is None:
                return self._choose(name, bridge, occupants)
            network = _network_from(subnet, name, bridge)
            others = [n for n in self._recorded() if n.name != name]
            clash = [f"network {n.name} ({n.subnet})" for n in others
                     if ipaddress.ip_network(n.subnet).overlaps(ipaddress.ip_network(network.subnet))]
            clash += [str(o) for o in occupied.overlapping(network.subnet, occupants)]
            if clash:
                raise UsageError(f"invalid --subnet {network.subnet}: it overlaps {clash[0]}")
            self._write(network)
        return network

    def _recorded(self) -> list[Network]:
        """Every network with a subnet on record (the default's only once chosen or set)."""
        default = self._read(DEFAULT_NETWORK)
        if os.environ.get("HOSTRT_BRIDGE_SUBNET"):
            default = _network_from(os.environ["HOSTRT_BRIDGE_SUBNET"], DEFAULT_NETWORK, default_bridge(), True)
        return ([default] if default else []) + self._users()

    def _choose(self, name: str, bridge: str, occupants: list[occupied.Occupant], builtin: bool = False) -> Network:
        """Under the store's lock: a record on the first free pool subnet, written."""
        used = [ipaddress.ip_network(n.subnet) for n in self._recorded() if n.name != name]
        used += [o.network for o in occupants if o.device != bridge or not bridge]
        network = _network_from(str(pools.first_free(used)), name, bridge, builtin)
        self._write(network)
        return network

    def overlaps(self, network: Network, occupants: list[occupied.Occupant]) -> list[str]:
        """What on the host overlaps the network's subnet, but its own bridge ([] when usable)."""
        return [str(o) for o in occupied.overlapping(network.subnet, occupants, own_device=network.bridge)]

    def _movable(self, network: Network, in_use: bool) -> bool:
        """The default network may change subnet while no container holds an address on it and its
        bridge is down: nothing can notice (dockerd, too, picks docker0's subnet at each start)."""
        return network.builtin and not in_use and not os.environ.get("HOSTRT_BRIDGE_SUBNET") \
            and not Path("/sys/class/net", network.bridge).exists()

    def overlapping(self, networks: list[Network]) -> dict[str, list[str]]:
        """{name: what overlaps it} for `network ls`/`inspect`: what would stop a container joining now."""
        occupants = occupied.host_occupants()
        return {n.name: [] if self._movable(n, bool(Leases(self.directory, n.bridge).read()))
                else self.overlaps(n, occupants) for n in networks}

    def usable(self, network: Network, in_use: bool) -> Network:
        """The network a container may join now, or SubnetTakenError naming what is in the way.

        Called under the network's lease lock and `occupied.host_lock()`; a movable default
        network (`_movable`) moves to a free subnet instead.
        """
        occupants = occupied.host_occupants()
        clash = self.overlaps(network, occupants)
        if not clash:
            return network
        if self._movable(network, in_use):
            with self._locked():
                return self._choose(DEFAULT_NETWORK, network.bridge, occupants, builtin=True)
        raise SubnetTakenError(f"network {network.name}: its subnet {network.subnet} overlaps {clash[0]}, which is "
                               "not hostrt's; its containers would be unreachable (take that interface down, or "
                               "remove the network and create it again)")

    def _write(self, network: Network) -> None:
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".network-")
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(network), out)
        os.replace(temp, self._path(network.name))

    def remove(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
