"""Address pools: where a network without `--subnet` takes its subnet, as Docker's default-address-pools.

The same pools as Docker's defaults: 172.17.0.0/16 to 172.31.0.0/16 as /16s, then
192.168.0.0/16 split into /20s. The first subnet that overlaps neither another hostrt
network nor any route or address on the host at that moment is taken. Docker picks the
same way, so two engines sharing the host skip each other's bridges whichever comes first.
HOSTRT_ADDRESS_POOLS replaces them: `BASE/LEN:SIZE[,BASE/LEN:SIZE...]`, e.g. `10.89.0.0/16:24`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass

from hostrt.errors import HostrtError, UsageError

DEFAULT_POOLS = "172.17.0.0/16:16,172.18.0.0/15:16,172.20.0.0/14:16,172.24.0.0/13:16,192.168.0.0/16:20"


@dataclass(frozen=True)
class Pool:
    base: ipaddress.IPv4Network
    size: int  # prefix length of each subnet taken from the pool

    def subnets(self) -> Iterator[ipaddress.IPv4Network]:
        return self.base.subnets(new_prefix=self.size)


def configured() -> list[Pool]:
    """The pools in order of preference (HOSTRT_ADDRESS_POOLS or Docker's defaults)."""
    text = os.environ.get("HOSTRT_ADDRESS_POOLS") or DEFAULT_POOLS
    pools = []
    for item in text.split(","):
        base, _, size = item.strip().rpartition(":")
        try:
            network = ipaddress.ip_network(base, strict=True)
            length = int(size)
        except ValueError:
            raise UsageError(f"invalid HOSTRT_ADDRESS_POOLS entry {item!r}: expected BASE/LEN:SIZE, "
                             "e.g. 10.89.0.0/16:24") from None
        if network.version != 4 or not network.prefixlen <= length <= 29:
            raise UsageError(f"invalid HOSTRT_ADDRESS_POOLS entry {item!r}: an IPv4 base and a size from its "
                             "prefix length to 29")
        pools.append(Pool(network, length))
    return pools


def first_free(used: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first pool subnet overlapping nothing in `used`; the error Docker gives when none is left."""
    for pool in configured():
        for candidate in pool.subnets():
            if not any(candidate.overlaps(u) for u in used):
                return candidate
    raise HostrtError("could not find an available, non-overlapping IPv4 address pool among the address pools "
                      "(HOSTRT_ADDRESS_POOLS); pass --subnet or remove unused networks")
