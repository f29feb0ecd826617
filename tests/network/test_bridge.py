"""Bridge networking end to end through the CLI: names, published ports, addresses, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt
from tests.network.conftest import (
    address_of,
    container_dir,
    forward_rules,
    free_port,
    http_get,
    leases,
    links,
    nat_rules,
    netns_files,
    netns_mounts,
)

pytestmark = pytest.mark.root
BRIDGE = os.environ["HOSTRT_BRIDGE"]
HTTPD = ["sh", "-c", "mkdir -p /www && echo served-by-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"]


def assert_no_network_left(hostrt: Hostrt, before_links: set[str]) -> None:
    assert links() - before_links == set()
    assert BRIDGE not in links()
    assert nat_rules(BRIDGE) == [] and forward_rules(BRIDGE) == []
    assert netns_files(hostrt.root) == [] and netns_mounts(hostrt.root) == []
    assert leases(hostrt.root) == {}


def test_containers_on_a_user_network_reach_each_other_by_name(hostrt: Hostrt) -> None:
    hostrt.ok("network", "create", "front")
    bridge = json.loads(hostrt.ok("network", "inspect", "front"))[0]["bridge"]
    assert bridge in links()
    try:
        hostrt.ok("run", "-d", "--name", "web", "--network", "front", "--hostname", "webhost", "busybox", *HTTPD)
        by_wget = hostrt("run", "--rm", "--network", "front", "busybox", "sh", "-c",
                         "for i in $(seq 50); do wget -qO- http://web/ && exit; sleep 0.1; done; exit 1")
        assert (by_wget.returncode, by_wget.stdout) == (0, "served-by-webhost\n"), by_wget.stderr
        by_nc = hostrt("run", "--rm", "--network", "front", "busybox", "sh", "-c",
                       r"printf 'GET / HTTP/1.0\r\n\r\n' | nc web 80")
        assert by_nc.returncode == 0 and by_nc.stdout.endswith("served-by-webhost\n"), by_nc.stderr
        # the default bridge, like docker's, has no names: only the user network does
        outside = hostrt("run", "--rm", "busybox", "wget", "-T", "2", "-qO-", "http://web/")
        assert outside.returncode != 0
        hostrt.ok("run", "-d", "--name", "peer", "--network", "front", "busybox", "sleep", "600")
        members = json.loads(hostrt.ok("network", "inspect", "front"))[0]["containers"]
        assert sorted(members.values()) == sorted([address_of(hostrt.root, "web"), address_of(hostrt.root, "peer")])
        settings = json.loads(hostrt.ok("inspect", "web"))[0]["NetworkSettings"]
        assert (settings["NetworkMode"], settings["IPAddress"]) == ("front", address_of(hostrt.root, "web"))
        refused = hostrt("network", "rm", "front")
        assert refused.returncode == 125 and "in use" in refused.stderr
        assert "web" in hostrt.ok("exec", "peer", "cat", "/etc/hosts")
        hostrt.ok("rm", "-f", "web")
        assert "web" not in hostrt.ok("exec", "peer", "cat", "/etc/hosts"), "a removed member leaves the others' hosts"
    finally:
        for name in ("web", "peer"):
            hostrt("rm", "-f", name)
        hostrt.ok("network", "rm", "front")
    assert "front" not in hostrt.ok("network", "ls", "-q").split()
    assert bridge not in links()


def test_published_port_serves_httpd_to_the_host(hostrt: Hostrt) -> None:
    before = links()
    port = free_port()
    hostrt.ok("run", "-d", "--name", "pub", "-h", "pubhost", "-p", f"127.0.0.1:{port}:80", "busybox", *HTTPD)
    try:
        assert http_get(f"http://127.0.0.1:{port}/") == "served-by-pubhost\n"
        assert hostrt.ok("port", "pub") == f"80/tcp -> 127.0.0.1:{port}\n"
        assert len(nat_rules(BRIDGE)) == 1  # outbound NAT for the default bridge (cannot be exercised here)
        assert len(forward_rules(BRIDGE)) == 2  # its containers' traffic and the replies, whatever FORWARD's policy
        busy = hostrt("run", "-d", "--name", "pub2", "-p", f"127.0.0.1:{port}:80", "busybox", *HTTPD)
        assert busy.returncode == 125 and f"127.0.0.1:{port}" in busy.stderr
        hostrt.ok("stop", "-t", "1", "pub")
        assert hostrt.ok("port", "pub") == ""
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        hostrt("rm", "-f", "pub", "pub2")
    assert_no_network_left(hostrt, before)


def test_published_port_of_a_foreground_run(hostrt: Hostrt) -> None:
    port = free_port()
    run = subprocess.Popen([sys.executable, "-m", "hostrt", "run", "--rm", "--name", "fg", "-h", "fghost",
                            "-p", f"127.0.0.1:{port}:80", "busybox", *HTTPD], env=hostrt.env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert http_get(f"http://127.0.0.1:{port}/") == "served-by-fghost\n"
    finally:
        hostrt("stop", "-t", "1", "fg")
        run.wait(30)
    assert leases(hostrt.root) == {}


def test_container_network_mode_shares_the_namespace(hostrt: Hostrt) -> None:
    hostrt.ok("run", "-d", "--name", "owner", "-h", "ownerhost", "busybox", *HTTPD)
    try:
        shared = hostrt("run", "--rm", "--network", "container:owner", "busybox", "sh", "-c",
                        "for i in $(seq 50); do wget -qO- http://127.0.0.1/ && exit; sleep 0.1; done; exit 1")
        assert (shared.returncode, shared.stdout) == (0, "served-by-ownerhost\n"), shared.stderr
    finally:
        hostrt("rm", "-f", "owner")


def test_fifty_concurrent_runs_get_fifty_distinct_addresses(hostrt: Hostrt) -> None:
    before = links()
    names = [f"many{i}" for i in range(50)]
    with ThreadPoolExecutor(50) as pool:
        runs = list(pool.map(lambda name: hostrt("run", "-d", "--name", name, "busybox", "sleep", "600"), names))
    try:
        assert [r.returncode for r in runs] == [0] * 50, [r.stderr for r in runs if r.returncode]
        addresses = [address_of(hostrt.root, name) for name in names]
        assert len(set(addresses)) == 50
        # what each container sees on eth0 is what was leased to it
        seen = hostrt.ok("exec", "many7", "ip", "-4", "-o", "addr", "show", "eth0")
        assert f" {addresses[7]}/" in seen
        assert len(netns_files(hostrt.root)) == 50
    finally:
        hostrt("rm", "-f", *[name for name, run in zip(names, runs) if run.returncode == 0])
    assert_no_network_left(hostrt, before)


def _running_pid(hostrt: Hostrt, name: str) -> int:
    for _ in range(100):
        done = hostrt("inspect", name)
        if done.returncode == 0:
            state = json.loads(done.stdout)[0]
            if state.get("State", {}).get("Running"):
                return int(state["State"]["Pid"])
        time.sleep(0.1)
    raise AssertionError(f"{name} never ran")


@pytest.mark.parametrize("point", ["net-after-lease", "net-after-netns", "after-create"])
def test_crash_while_connecting_then_prune_leaves_nothing(hostrt: Hostrt, point: str) -> None:
    before = links()
    done = subprocess.run([sys.executable, "-m", "hostrt", "run", "-p", f"127.0.0.1:{free_port()}:80", "busybox",
                           "true"], env={**hostrt.env, "HOSTRT_FAILPOINT": point}, capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == -9
    assert len(leases(hostrt.root)) == 1
    hostrt.ok("system", "prune", "-f")
    assert_no_network_left(hostrt, before)


def test_sigkill_of_hostrt_then_prune_leaves_nothing(hostrt: Hostrt) -> None:
    before = links()
    port = free_port()
    run = subprocess.Popen([sys.executable, "-m", "hostrt", "run", "--name", "killed", "-p", f"127.0.0.1:{port}:80",
                            "busybox", "sleep", "600"], env=hostrt.env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = _running_pid(hostrt, "killed")
    run.send_signal(signal.SIGKILL)
    run.wait()
    os.kill(pid, signal.SIGKILL)  # the container dies with no hostrt watching it
    for _ in range(200):  # until the host's init has collected it (a zombie still counts as running)
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
    # a second crash: hostrt killed in the middle of `rm`, after the record went, before the network did
    hostrt.ok("run", "-d", "--name", "halfgone", "busybox", "sleep", "600")
    halfgone = container_dir(hostrt.root, "halfgone")
    hostrt.ok("kill", "halfgone")
    (halfgone / "record.json").unlink()
    assert len(leases(hostrt.root)) == 2
    report = hostrt.ok("system", "prune")
    assert "halfgone" not in report
    assert_no_network_left(hostrt, before)
