"""Suite-wide fixtures: every test runs against a temporary hostrt root, never the user's."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ("tests.cgroup_envs",)  # the host/v2-guest switch of the cgroup tests


def _test_network_settings() -> None:
    """Containers in tests get their own bridge and a subnet no host route uses; the host's
    ip_forward and resolvers are left alone (no traffic may leave this machine's namespaces)."""
    from hostrt.network.networks import host_routes

    used = host_routes()
    free = next(net for net in ipaddress.ip_network("10.231.0.0/16").subnets(new_prefix=24)
                if not any(net.overlaps(route) for route in used))
    for key, value in {"HOSTRT_BRIDGE": f"hrtt{os.getpid() % 100000}", "HOSTRT_BRIDGE_SUBNET": str(free),
                       "HOSTRT_ADDRESS_POOLS": "10.232.0.0/16:24", "HOSTRT_IP_FORWARD": "0", "HOSTRT_DNS": ""}.items():
        os.environ.setdefault(key, value)


if sys.platform.startswith("linux"):  # containers (and the host routes they must avoid) exist on Linux only
    _test_network_settings()

PORTABLE_MARK = "pytest.mark.portable"


def _declares_portable(module: Path) -> bool:
    try:
        return PORTABLE_MARK in module.read_text(encoding="utf-8")
    except OSError:
        return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Off Linux, only test modules that mark tests portable are imported (and only the
    directories that hold one, whose conftest.py must then import there too): the others
    import Linux-only modules (fcntl, termios, the runtime's syscalls) at the top, as they may."""
    if sys.platform.startswith("linux"):
        return None
    if collection_path.is_dir():
        return None if any(map(_declares_portable, collection_path.rglob("test_*.py"))) else True
    if collection_path.name.startswith("test_") and collection_path.suffix == ".py":
        return None if _declares_portable(collection_path) else True
    return None


@pytest.fixture(autouse=True)
def _isolated_hostrt_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path_factory.mktemp("hostrt-root")
    monkeypatch.setenv("HOSTRT_ROOT", str(root))
    monkeypatch.delenv("HOSTRT_RUN_ROOT", raising=False)
    return root
