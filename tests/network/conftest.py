"""Network tests reuse the engine's root (busybox image built once) and CLI helper, and look
at the host for what a container's network leaves behind."""

from __future__ import annotations

import http.client
import json
import os
import shlex
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt, _runtime, engine_root  # noqa: F401  (engine_root is a fixture)


@pytest.fixture
def hostrt(engine_root: Path) -> Hostrt:  # noqa: F811
    return Hostrt(engine_root, _runtime())


def http_get(url: str, timeout: float = 10, request_timeout: float = 2, pause: float = 0.1) -> str:
    """GET with retries while the server comes up (a VM's forward may accept and then drop
    the connection, or answer slowly under emulation: the caller widens the times)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=request_timeout) as reply:
                return reply.read().decode()
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(pause)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def nat_rules(bridge: str, table: str = "nat", chain: str = "POSTROUTING") -> list[str]:
    """The rules tagged for `bridge` (whole comment: hrtt12's are not hrtt123's)."""
    rules = subprocess.run(["iptables", "-w", "-t", table, "-S", chain], capture_output=True, text=True).stdout
    return [rule for rule in rules.splitlines() if f"--comment hostrt:{bridge} " in " ".join(shlex.split(rule)) + " "]


def forward_rules(bridge: str) -> list[str]:
    return nat_rules(bridge, "filter", "HOSTRT-FORWARD")


def leases(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in (root / "networks").glob("*.leases.json"):
        found.update(json.loads(path.read_text()))
    return found


def netns_files(root: Path) -> list[str]:
    directory = root / "run" / "netns"
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def netns_mounts(root: Path) -> list[str]:
    prefix = str(root / "run" / "netns")
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)]


def container_dir(root: Path, name: str) -> Path:
    return next(p.parent for p in (root / "containers").glob("*/record.json") if json.loads(p.read_text())["name"] == name)


def address_of(root: Path, name: str) -> str:
    return json.loads((container_dir(root, name) / "network.json").read_text())["address"]
