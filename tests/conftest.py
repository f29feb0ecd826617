"""Suite-wide fixtures: every test runs against a temporary hostrt root, never the user's."""

from __future__ import annotations

import ipaddress
import os
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


_test_network_settings()


@pytest.fixture(autouse=True)
def _isolated_hostrt_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path_factory.mktemp("hostrt-root")
    monkeypatch.setenv("HOSTRT_ROOT", str(root))
    monkeypatch.delenv("HOSTRT_RUN_ROOT", raising=False)
    return root
