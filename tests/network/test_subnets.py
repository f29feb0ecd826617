"""Subnets beside whatever else the host has: pools that skip the host's routes and addresses,
refused overlaps, subnets taken after the fact, and bridges that are not hostrt's.

The "other engine" here is a plain bridge made by the test (the real
peers, Docker and Podman, are in test_peers.py); each lives in a /16 no route uses yet.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from hostrt.network.occupied import host_occupants
from tests.engine.conftest import Hostrt
from tests.network.conftest import leases, links, netns_files

pytestmark = pytest.mark.root
TAG = os.getpid() % 100000


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def block() -> ipaddress.IPv4Network:
    """A /16 of 10.0.0.0/8 that nothing on the host overlaps now."""
    used = [o.network for o in host_occupants()]
    return next(net for net in ipaddress.ip_network("10.0.0.0/8").subnets(new_prefix=16)
                if net.network_address.packed[1] >= 160 and not any(net.overlaps(u) for u in used))


@pytest.fixture
def squatter() -> Iterator[str]:
    """A bridge standing for another engine's; deleted afterwards."""
    name = f"hrtd{TAG}"
    ip("link", "add", name, "type", "bridge")
    ip("link", "set", name, "up")
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.fixture
def pooled(hostrt: Hostrt, block: ipaddress.IPv4Network) -> Iterator[Hostrt]:
    """The CLI with the address pools set to /24s of `block`; its user networks removed afterwards."""
    hostrt.env = {**hostrt.env, "HOSTRT_ADDRESS_POOLS": f"{block}:24"}
    before = set(hostrt.ok("network", "ls", "-q").split())
    yield hostrt
    for name in set(hostrt.ok("network", "ls", "-q").split()) - before:
        hostrt("network", "rm", name)


def subnet_of(hostrt: Hostrt, name: str) -> str:
    return json.loads(hostrt.ok("network", "inspect", name))[0]["subnet"]


def nth(block: ipaddress.IPv4Network, n: int, prefix: int = 24) -> ipaddress.IPv4Network:
    return list(block.subnets(new_prefix=prefix))[n]


def test_create_skips_addresses_and_routes_of_every_table(pooled: Hostrt, block: ipaddress.IPv4Network,
                                                          squatter: str) -> None:
    ip("addr", "add", f"{nth(block, 0)[1]}/24", "dev", squatter)
    ip("route", "add", str(nth(block, 1)), "dev", squatter, "table", "4242")  # policy routing, as VPNs do
    try:
        pooled.ok("network", "create", "first")
        assert subnet_of(pooled, "first") == str(nth(block, 2))
        pooled.ok("network", "create", "second")
        assert subnet_of(pooled, "second") == str(nth(block, 3)), "another network's subnet is skipped too"
    finally:
        subprocess.run(["ip", "route", "flush", "table", "4242"], capture_output=True)


def test_an_overlapping_subnet_is_refused_naming_what_it_overlaps(pooled: Hostrt, block: ipaddress.IPv4Network,
                                                                  squatter: str) -> None:
    ip("addr", "add", f"{nth(block, 0)[1]}/24", "dev", squatter)
    before = links()
    refused = pooled("network", "create", "--subnet", str(nth(block, 0, 25)), "clash")
    assert refused.returncode == 125
    assert refused.stderr.count("\n") == 1 and squatter in refused.stderr and str(nth(block, 0)) in refused.stderr
    assert "clash" not in pooled.ok("network", "ls", "-q").split() and links() == before
    pooled.ok("network", "create", "--subnet", str(nth(block, 5)), "mine")
    refused = pooled("network", "create", "--subnet", str(nth(block, 2, 23)), "clash")
    assert refused.returncode == 125 and "network mine" in refused.stderr, refused.stderr


def test_no_free_subnet_left_is_docker_s_one_line_error(pooled: Hostrt, block: ipaddress.IPv4Network,
                                                        squatter: str) -> None:
    pooled.env["HOSTRT_ADDRESS_POOLS"] = f"{nth(block, 0, 23)}:24"  # two /24s
    ip("addr", "add", f"{nth(block, 0)[1]}/24", "dev", squatter)
    pooled.ok("network", "create", "last")
    assert subnet_of(pooled, "last") == str(nth(block, 1))
    full = pooled("network", "create", "more")
    assert full.returncode == 125
    assert "could not find an available, non-overlapping IPv4 address pool" in full.stderr
    assert full.stderr.count("\n") == 1


def test_concurrent_creates_take_different_subnets(pooled: Hostrt) -> None:
    with ThreadPoolExecutor(6) as pool:
        done = list(pool.map(lambda i: pooled("network", "create", f"many{i}"), range(6)))
    assert [d.returncode for d in done] == [0] * 6, [d.stderr for d in done]
    subnets = [subnet_of(pooled, f"many{i}") for i in range(6)]
    assert len(set(subnets)) == 6


def test_a_subnet_taken_since_is_reported_and_refused(pooled: Hostrt, block: ipaddress.IPv4Network,
                                                      squatter: str) -> None:
    pooled.ok("network", "create", "older")
    network = json.loads(pooled.ok("network", "inspect", "older"))[0]
    ip("link", "del", network["bridge"])  # as after a reboot: the record is left, the bridge is not
    ip("addr", "add", f"{ipaddress.ip_network(network['subnet'])[1]}/24", "dev", squatter)  # taken meanwhile
    row = next(line for line in pooled.ok("network", "ls").splitlines() if line.startswith("older "))
    assert squatter in row
    assert squatter in " ".join(json.loads(pooled.ok("network", "inspect", "older"))[0]["overlaps"])
    before = links()
    refused = pooled("run", "--rm", "--network", "older", "busybox", "true")
    assert refused.returncode == 125 and refused.stderr.count("\n") == 1, refused.stderr
    assert squatter in refused.stderr and network["subnet"] in refused.stderr
    assert links() == before and leases(pooled.root) == {} and netns_files(pooled.root) == []
    ip("addr", "flush", "dev", squatter)
    pooled.ok("run", "--rm", "--network", "older", "busybox", "true")
    assert json.loads(pooled.ok("network", "inspect", "older"))[0]["overlaps"] == []


def test_the_unused_default_network_moves_off_a_taken_subnet(hostrt: Hostrt, block: ipaddress.IPv4Network,
                                                             squatter: str) -> None:
    bridge = f"hrtm{TAG}"
    env = {k: v for k, v in hostrt.env.items() if k != "HOSTRT_BRIDGE_SUBNET"}
    hostrt.env = {**env, "HOSTRT_BRIDGE": bridge, "HOSTRT_ADDRESS_POOLS": f"{block}:24"}
    record = hostrt.root / "networks" / "bridge.json"
    try:
        first = hostrt.ok("run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
        assert f"{nth(block, 0)[2]}/24" in first
        assert json.loads(record.read_text())["subnet"] == str(nth(block, 0)), "kept in the network's record"
        ip("addr", "add", f"{nth(block, 0)[1]}/24", "dev", squatter)
        assert "-" == hostrt.ok("network", "ls").splitlines()[1].split()[-1], "nothing would stop a container"
        moved = hostrt.ok("run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
        assert f"{nth(block, 1)[2]}/24" in moved
        assert bridge not in links()
    finally:
        record.unlink(missing_ok=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def test_a_bridge_hostrt_did_not_make_is_neither_joined_nor_deleted(hostrt: Hostrt,
                                                                   block: ipaddress.IPv4Network) -> None:
    foreign = f"hrtf{TAG}"
    ip("link", "add", foreign, "type", "bridge")
    try:
        ip("addr", "add", f"{nth(block, 0)[1]}/24", "dev", foreign)
        hostrt.env = {**hostrt.env, "HOSTRT_BRIDGE": foreign, "HOSTRT_BRIDGE_SUBNET": str(nth(block, 1))}
        refused = hostrt("run", "--rm", "busybox", "true")
        assert refused.returncode == 125 and "not made by hostrt" in refused.stderr, refused.stderr
        (hostrt.root / "networks").mkdir(exist_ok=True)
        (hostrt.root / "networks" / f"{foreign}.leases.json").write_text("{}")  # as a crash would leave
        hostrt.ok("system", "prune", "-f")
        assert foreign in links()
    finally:
        (hostrt.root / "networks" / f"{foreign}.leases.json").unlink(missing_ok=True)
        subprocess.run(["ip", "link", "del", foreign], capture_output=True)
