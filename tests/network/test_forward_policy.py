"""hostrt's containers still talk when FORWARD's policy is DROP, as Docker leaves it on a host
where it turned forwarding on (with br_netfilter, that policy also sees traffic between two
containers of one bridge).

Run in a network namespace of the test's own, so the policy never applies to the host.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt

pytestmark = pytest.mark.root
HTTPD = "mkdir -p /www && echo served-by-fwweb > /www/index.html && exec httpd -f -p 80 -h /www"
GET = "for i in $(seq 20); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 fwweb 80 && exit; sleep 0.1; done; exit 1"


@pytest.fixture
def dropping() -> Iterator[str]:
    """A network namespace whose FORWARD policy drops, with bridge netfilter on."""
    name = f"hostrt-fw-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", name, "iptables", "-w", "-P", "FORWARD", "DROP"], check=True)
        nf = subprocess.run(["ip", "netns", "exec", name, "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"],
                            capture_output=True, text=True).stdout.strip()
        if nf != "1":
            pytest.skip("bridge netfilter is off in a new namespace here: FORWARD never sees bridged traffic")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _kill_monitors_in(root: Path, netns: str) -> None:
    """The monitor started for the namespace (it would idle out after a minute)."""
    target = os.stat(f"/run/netns/{netns}").st_ino
    for entry in Path("/proc").iterdir():
        try:
            if b"hostrt.engine.monitor" in (entry / "cmdline").read_bytes() \
                    and os.stat(entry / "ns" / "net").st_ino == target:
                os.kill(int(entry.name), 9)
        except (OSError, ValueError):
            continue


def test_containers_of_a_network_talk_under_a_dropping_forward_policy(hostrt: Hostrt, dropping: str) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", dropping, sys.executable, "-m", "hostrt", *args], env=hostrt.env,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

    try:
        assert cli("network", "create", "fw").returncode == 0
        started = cli("run", "-d", "--name", "fwweb", "--network", "fw", "busybox", "sh", "-c", HTTPD)
        assert started.returncode == 0, started.stderr
        reply = cli("run", "--rm", "--network", "fw", "busybox", "sh", "-c", GET)
        assert reply.returncode == 0 and reply.stdout.endswith("served-by-fwweb\n"), reply.stderr
        policy = subprocess.run(["ip", "netns", "exec", dropping, "iptables", "-w", "-S", "FORWARD"],
                                capture_output=True, text=True).stdout.splitlines()[0]
        assert policy == "-P FORWARD DROP", "hostrt never changes a policy"
    finally:
        cli("rm", "-f", "fwweb")
        cli("network", "rm", "fw")
        _kill_monitors_in(hostrt.root, dropping)
