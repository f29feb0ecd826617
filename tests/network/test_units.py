"""Parsing of -p, address picking, leases under concurrent writers, address pools, rule comments (no root needed)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from hostrt.errors import UsageError
from hostrt.network.ipam import AddressesExhaustedError, Leases, pick_address
from hostrt.network.ports import PortSpec, parse


@pytest.mark.parametrize(("text", "expected"), [
    ("8080:80", PortSpec("0.0.0.0", 8080, 80, "tcp")),
    ("127.0.0.1:8080:80", PortSpec("127.0.0.1", 8080, 80, "tcp")),
    ("127.0.0.1:8080:80/udp", PortSpec("127.0.0.1", 8080, 80, "udp")),
    ("127.0.0.1::80", PortSpec("127.0.0.1", 0, 80, "tcp")),
    ("80", PortSpec("0.0.0.0", 0, 80, "tcp")),
])
def test_publish_spellings(text: str, expected: PortSpec) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["", "80/sctp", "x:80", "1.2.3:80:80", "70000:80", "8080:0", "a:b:c:d"])
def test_bad_publish_values_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)


def test_pick_skips_gateway_and_leases_and_runs_out() -> None:
    assert pick_address("10.9.0.0/29", "10.9.0.1", {}) == "10.9.0.2"
    assert pick_address("10.9.0.0/29", "10.9.0.1", {"a": "10.9.0.2", "b": "10.9.0.4"}) == "10.9.0.3"
    full = {str(i): f"10.9.0.{i}" for i in range(2, 7)}
    with pytest.raises(AddressesExhaustedError):
        pick_address("10.9.0.0/29", "10.9.0.1", full)


def _lease(directory: str, container_id: str) -> None:
    with Leases(Path(directory), "net").locked() as held:
        held[container_id] = pick_address("10.9.0.0/24", "10.9.0.1", held)


def test_concurrent_writers_get_distinct_addresses(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(8) as pool:
        pool.starmap(_lease, [(str(tmp_path), f"c{i}") for i in range(40)])
    held = Leases(tmp_path, "net").read()
    assert len(held) == 40 and len(set(held.values())) == 40


def test_default_pools_are_docker_s_in_its_order(monkeypatch: pytest.MonkeyPatch) -> None:
    import ipaddress

    from hostrt.network import pools

    monkeypatch.delenv("HOSTRT_ADDRESS_POOLS", raising=False)
    subnets = [str(s) for pool in pools.configured() for s in pool.subnets()]
    assert subnets[:2] == ["172.17.0.0/16", "172.18.0.0/16"] and subnets[14] == "172.31.0.0/16"
    assert subnets[15:17] == ["192.168.0.0/20", "192.168.16.0/20"] and len(subnets) == 15 + 16
    taken = [ipaddress.ip_network(n) for n in ("172.16.0.0/12", "192.168.0.0/19")]
    assert str(pools.first_free(taken)) == "192.168.32.0/20"
    monkeypatch.setenv("HOSTRT_ADDRESS_POOLS", "10.1.0.0/16:33")
    with pytest.raises(UsageError):
        pools.configured()


def test_a_rule_is_known_by_its_whole_comment() -> None:
    from hostrt.network.nat import _comment

    # iptables-nft prints comments quoted
    quoted = '-A POSTROUTING -s 10.1.0.0/24 -m comment --comment "hostrt:hrtt123" -j MASQUERADE'
    assert _comment(quoted) == "hostrt:hrtt123"
    assert _comment("-A HOSTRT-FORWARD -i hrtt12 -m comment --comment hostrt:hrtt12 -j ACCEPT") == "hostrt:hrtt12"
    assert _comment("-A FORWARD -j DOCKER-USER") == ""
