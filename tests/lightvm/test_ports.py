"""Planning a VM container's published ports (no machine needed): loopback only, a host port
for `-p CTRPORT`, and the plan written before QEMU is asked for anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.lightvm import ports
from hostrt.errors import UsageError
from hostrt.network.ports import parse


def test_ports_are_fixed_to_loopback_and_given_a_host_port(tmp_path: Path) -> None:
    planned = ports.plan(tmp_path, Path("/m/default"), [parse("8080:80").to_dict(), parse("53/udp").to_dict()])
    assert [(p["host_ip"], p["container_port"], p["protocol"]) for p in planned] == \
        [("127.0.0.1", 80, "tcp"), ("127.0.0.1", 53, "udp")]
    assert planned[0]["host_port"] == 8080 and 0 < planned[1]["host_port"] < 65536
    saved = json.loads((tmp_path / ports.PLAN_FILE).read_text())
    assert saved == {"machine": "/m/default", "ports": planned, "up": []}


def test_other_host_addresses_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="127.0.0.1 only"):
        ports.plan(tmp_path, Path("/m/d"), [parse("192.0.2.1:8080:80").to_dict()])
    assert not (tmp_path / ports.PLAN_FILE).exists()


def test_nothing_published_leaves_nothing(tmp_path: Path) -> None:
    assert ports.plan(tmp_path, Path("/m/d"), []) == []
    assert ports.close_forwards(tmp_path) is False
    assert list(tmp_path.iterdir()) == []
