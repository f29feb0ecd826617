"""hostrt beside the real peers: Docker's daemon (docker0 up) and Podman (cni-podman0 up) on the
same host, each with a published httpd and containers that talk to each other.

hostrt's default network and user networks take subnets from Docker's default pools while
the peers' bridges are up: they must skip them, serve published ports and connect
containers, and once hostrt has created, used and pruned its networks the peers' containers
must still reach each other and their published ports, with their iptables rules intact.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostrt.network.occupied import host_occupants
from tests.engine.conftest import Hostrt
from tests.network.conftest import forward_rules, free_port, http_get, links, nat_rules
from tests.network.peers import GET, HTTPD, IMAGE, Dockerd, Podman, busybox_tar, iptables_rules

pytestmark = pytest.mark.root
PODMAN_SUBNET = ipaddress.ip_network("10.88.0.0/16")  # cni-podman0 in Debian's /etc/cni/net.d/87-podman-bridge.conflist


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the peers' bridges and iptables rules need root"
    for tool in ("dockerd", "podman", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (ci/setup installs docker.io and podman)"
    if subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode == 0 \
            or Path("/sys/class/net/docker0").exists():
        return "a dockerd of this host already owns docker0 and Docker's chains; the test starts its own"
    if Path("/sys/class/net/cni-podman0").exists():
        return "cni-podman0 is already up: the test would share Podman's default network with the host's containers"
    return None


@dataclass
class Peers:
    docker: Dockerd
    podman: Podman
    docker_port: int
    podman_port: int

    def assert_serving(self) -> None:
        """Each peer's published port answers on 127.0.0.1, and another container reaches its httpd."""
        assert http_get(f"http://127.0.0.1:{self.docker_port}/", timeout=20) == "served-by-docker\n"
        assert http_get(f"http://127.0.0.1:{self.podman_port}/", timeout=20) == "served-by-podman\n"
        reply = self.docker.ok("run", "--rm", IMAGE, "sh", "-c", GET.format(address=self.docker.address("dweb")))
        assert reply.endswith("served-by-docker\n")
        reply = self.podman.ok("run", "--rm", f"localhost/{IMAGE}", "sh", "-c",
                               GET.format(address=self.podman.address("pweb")))
        assert reply.endswith("served-by-podman\n")

    def rules(self) -> dict[str, list[str]]:
        markers = Dockerd.MARKERS + Podman.MARKERS
        return {table: [r for r in rules if any(m in r for m in markers)] for table, rules in iptables_rules().items()}


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("peers")
    image = busybox_tar(base)
    (base / "docker").mkdir()
    (base / "podman").mkdir()
    podman = Podman(base / "podman")
    docker = Dockerd(base / "docker")
    try:
        docker.wait_ready()
        docker.ok("import", str(image), IMAGE)
        podman.ok("import", str(image), IMAGE)
        found = Peers(docker, podman, free_port(), free_port())
        docker.ok("run", "-d", "--name", "dweb", "-p", f"127.0.0.1:{found.docker_port}:80", IMAGE,
                  "sh", "-c", HTTPD.format(who="docker"))
        podman.ok("run", "-d", "--name", "pweb", "-p", f"127.0.0.1:{found.podman_port}:80", f"localhost/{IMAGE}",
                  "sh", "-c", HTTPD.format(who="podman"))
        yield found
    finally:
        podman.stop()
        docker.stop()


@pytest.fixture
def beside(hostrt: Hostrt) -> Iterator[Hostrt]:
    """hostrt as a user has it: Docker's default pools, the default network's subnet chosen by
    hostrt (no HOSTRT_BRIDGE_SUBNET), on a bridge of this test's own."""
    bridge = f"hrtp{os.getpid() % 100000}"
    env = {k: v for k, v in hostrt.env.items() if k not in ("HOSTRT_BRIDGE_SUBNET", "HOSTRT_ADDRESS_POOLS")}
    hostrt.env = {**env, "HOSTRT_BRIDGE": bridge}
    record = hostrt.root / "networks" / "bridge.json"
    record.unlink(missing_ok=True)
    yield hostrt
    for name in ("hweb", "hpeer", "uweb"):
        hostrt("rm", "-f", name)
    for name in ("hpeers", "older"):
        hostrt("network", "rm", name)
    record.unlink(missing_ok=True)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def docker0_subnet() -> ipaddress.IPv4Network:
    info = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "docker0"], capture_output=True,
                                     text=True).stdout)[0]["addr_info"][0]
    return ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)


def test_hostrt_skips_the_peers_subnets_and_leaves_them_working(peers: Peers, beside: Hostrt) -> None:
    peers.assert_serving()
    rules_before = peers.rules()
    forward_policy = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True,
                                    text=True).stdout.split("\n")[0]
    taken = [PODMAN_SUBNET, docker0_subnet()]

    port = free_port()
    beside.ok("run", "-d", "--name", "hweb", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
              HTTPD.format(who="hostrt"))
    assert http_get(f"http://127.0.0.1:{port}/", timeout=20) == "served-by-hostrt\n"
    default = json.loads(beside.ok("network", "inspect", "bridge"))[0]
    subnet = ipaddress.ip_network(default["subnet"])
    assert not any(subnet.overlaps(t) for t in taken), f"{subnet} overlaps a peer's bridge"
    assert not any(o.network.overlaps(subnet) for o in host_occupants() if o.device != default["bridge"])
    assert default["overlaps"] == []
    address = json.loads(beside.ok("inspect", "hweb"))[0]["NetworkSettings"]["IPAddress"]
    reply = beside.ok("run", "--rm", "busybox", "sh", "-c", GET.format(address=address))
    assert reply.endswith("served-by-hostrt\n"), "container to container on the default network"

    beside.ok("network", "create", "hpeers")
    user = ipaddress.ip_network(json.loads(beside.ok("network", "inspect", "hpeers"))[0]["subnet"])
    assert not any(user.overlaps(t) for t in [*taken, subnet])
    beside.ok("run", "-d", "--name", "uweb", "--network", "hpeers", "busybox", "sh", "-c", HTTPD.format(who="uweb"))
    reply = beside.ok("run", "--rm", "--network", "hpeers", "busybox", "sh", "-c",
                      "for i in $(seq 50); do " + GET.format(address="uweb") + " && exit; sleep 0.1; done; exit 1")
    assert reply.endswith("served-by-uweb\n"), "container to container by name on a user network"
    peers.assert_serving()  # while hostrt's networks are up

    beside.ok("rm", "-f", "hweb", "uweb")
    pruned = beside.ok("system", "prune", "-f")
    assert "hpeers" not in beside.ok("network", "ls", "-q").split(), pruned
    assert default["bridge"] not in links()
    assert nat_rules(default["bridge"]) == [] and forward_rules(default["bridge"]) == []
    peers.assert_serving()
    assert peers.rules() == rules_before, "hostrt changed a peer's iptables rules"
    assert subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True).stdout.split("\n")[0] \
        == forward_policy
    assert {"docker0", "cni-podman0"} <= links()


def test_a_subnet_a_docker_network_took_since_is_reported_and_refused(peers: Peers, beside: Hostrt) -> None:
    beside.ok("network", "create", "older")
    network = json.loads(beside.ok("network", "inspect", "older"))[0]
    subprocess.run(["ip", "link", "del", network["bridge"]], check=True)  # as after a reboot
    peers.docker.ok("network", "create", "--subnet", network["subnet"], "dnet")  # Docker sees the subnet free
    try:
        peers.docker.ok("run", "-d", "--name", "dnetc", "--network", "dnet", IMAGE, "sleep", "600")
        docker_bridge = "br-" + peers.docker.ok("network", "inspect", "-f", "{{.Id}}", "dnet").strip()[:12]
        row = next(line for line in beside.ok("network", "ls").splitlines() if line.startswith("older "))
        assert docker_bridge in row
        refused = beside("run", "--rm", "--network", "older", "busybox", "true")
        assert refused.returncode == 125 and refused.stderr.count("\n") == 1, refused.stderr
        assert docker_bridge in refused.stderr and network["subnet"] in refused.stderr
        assert network["bridge"] not in links(), "nothing made for the refused container"
        peers.docker.ok("rm", "-f", "dnetc")
        peers.docker.ok("network", "rm", "dnet")
        beside.ok("run", "--rm", "--network", "older", "busybox", "true")
    finally:
        peers.docker.docker("rm", "-f", "dnetc")
        peers.docker.docker("network", "rm", "dnet")
    peers.assert_serving()
