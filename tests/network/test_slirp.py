"""slirp4netns networking end to end through the CLI (--network slirp4netns, the rootless default):
tap0 with slirp's address, published ports, the host's loopback closed, a busy port, and no
slirp4netns process, socket or namespace file left once the container is gone.

These run as root (the engine's tests do); the same code path as an unprivileged user in a
user namespace is in test_slirp_rootless.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt
from tests.network.conftest import container_dir, free_port, http_get, netns_files, netns_mounts

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("slirp4netns") is None, reason="slirp4netns is not installed")]
HTTPD = ["sh", "-c", "mkdir -p /www && echo via-slirp > /www/index.html && exec httpd -f -p 80 -h /www"]


def slirp_processes(root: Path) -> list[int]:
    """slirp4netns processes serving containers of this hostrt root (their API socket is under it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and args[0].endswith(b"slirp4netns") and any(str(root).encode() in arg for arg in args):
            found.append(int(entry))
    return found


def assert_nothing_left(root: Path) -> None:
    assert slirp_processes(root) == []
    assert list((root / "run" / "slirp").glob("*")) == [], "no API socket left"
    assert netns_files(root) == [] and netns_mounts(root) == []


def test_published_port_reaches_httpd_and_rm_ends_slirp4netns(hostrt: Hostrt) -> None:
    port = free_port()
    hostrt.ok("run", "-d", "--name", "slirp-web", "--network", "slirp4netns", "-p", f"127.0.0.1:{port}:80",
              "busybox", *HTTPD)
    try:
        assert http_get(f"http://127.0.0.1:{port}/") == "via-slirp\n"
        assert hostrt.ok("port", "slirp-web").strip() == f"80/tcp -> 127.0.0.1:{port}"
        addresses = hostrt.ok("exec", "slirp-web", "ip", "-o", "-4", "addr", "show", "tap0")
        assert "inet 10.0.2.100/24" in addresses
        assert "mtu 65520" in hostrt.ok("exec", "slirp-web", "ip", "link", "show", "tap0")
        assert "nameserver 10.0.2.3" in hostrt.ok("exec", "slirp-web", "cat", "/etc/resolv.conf")
        assert len(slirp_processes(hostrt.root)) == 1
        assert (container_dir(hostrt.root, "slirp-web") / "slirp.json").exists()
    finally:
        hostrt("rm", "-f", "slirp-web")
    assert_nothing_left(hostrt.root)


def test_foreground_rm_run_leaves_no_slirp4netns(hostrt: Hostrt) -> None:
    out = hostrt.ok("run", "--rm", "--network", "slirp4netns", "busybox", "sh", "-c",
                    "ip -o -4 addr show tap0; ip route show default")
    assert "10.0.2.100/24" in out and "default via 10.0.2.2 dev tap0" in out
    assert_nothing_left(hostrt.root)


def test_second_container_on_a_busy_port_fails_in_one_line_and_leaves_nothing(hostrt: Hostrt) -> None:
    port = free_port()
    hostrt.ok("run", "-d", "--name", "slirp-first", "--network", "slirp4netns", "-p", f"127.0.0.1:{port}:80",
              "busybox", *HTTPD)
    try:
        for detach in ([], ["-d"]):
            done = hostrt("run", *detach, "--rm", "--name", "slirp-second", "--network", "slirp4netns",
                          "-p", f"127.0.0.1:{port}:80", "busybox", "true")
            assert done.returncode == 125
            assert done.stderr.strip() == f"hostrt: error: cannot publish 127.0.0.1:{port}/tcp: Address already in use"
            assert hostrt("inspect", "slirp-second").returncode != 0, "the failed --rm container is gone"
            assert len(slirp_processes(hostrt.root)) == 1, "only the first container's slirp4netns is left"
            assert len(netns_files(hostrt.root)) == 1
        assert http_get(f"http://127.0.0.1:{port}/") == "via-slirp\n", "the first container still serves its port"
    finally:
        hostrt("rm", "-f", "slirp-first")
    assert_nothing_left(hostrt.root)


def test_crash_after_slirp4netns_started_then_prune_ends_it(hostrt: Hostrt) -> None:
    done = subprocess.run([sys.executable, "-m", "hostrt", "run", "--network", "slirp4netns", "busybox", "true"],
                          env={**hostrt.env, "HOSTRT_FAILPOINT": "net-after-slirp"}, capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == -9
    assert len(slirp_processes(hostrt.root)) == 1
    hostrt.ok("system", "prune", "-f")
    assert_nothing_left(hostrt.root)


@pytest.fixture
def outer_netns(tmp_path: Path) -> Iterator[Path]:
    """A network namespace of the test's own standing in for the host: 192.0.2.1 on a link
    with an httpd on it (a veth pair, both ends inside), and an httpd on its loopback that containers must not reach."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("outer-service\n")
    path = tmp_path / "outer.net"
    path.touch()
    setup = ("ip link set lo up && ip link add d0 type veth peer name d1 && ip addr add 192.0.2.1/24 dev d0 && "
             "ip link set d1 up && ip link set d0 up && ip route add default dev d0")
    servers: list[subprocess.Popen] = []
    try:
        subprocess.run(["unshare", f"--net={path}", "sh", "-c", setup], check=True)
        for address in ("192.0.2.1:8080", "127.0.0.1:8081"):  # nsenter execs httpd: the pid is the server's
            servers.append(subprocess.Popen(["nsenter", f"--net={path}", busybox, "httpd", "-f", "-p", address,
                                             "-h", str(www)]))
        subprocess.run(["nsenter", f"--net={path}", "sh", "-c", "for i in $(seq 50); do [ $(ss -Hltn | wc -l) -ge 2 ] "
                        "&& exit; sleep 0.1; done; exit 1"], check=True)  # both listen before the container connects
        yield path
    finally:
        for server in servers:
            server.kill()
            server.wait()
        subprocess.run(["umount", str(path)], capture_output=True)


def test_outbound_reaches_the_host_side_network_but_not_its_loopback(hostrt: Hostrt, outer_netns: Path) -> None:
    """slirp4netns makes the container's connections from the caller's namespace (here: the
    test's own); 10.0.2.2 would be the host's 127.0.0.1 without --disable-host-loopback."""
    get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3"  # busybox 1.35's static wget -T segfaults
    script = f"{get} 192.0.2.1 8080; {get} 10.0.2.2 8081 | grep -q outer-service && echo host-loopback-reached; true"
    done = subprocess.run(["nsenter", f"--net={outer_netns}", sys.executable, "-m", "hostrt", "run", "--rm",
                           "--network", "slirp4netns", "busybox", "sh", "-c", script],
                          env={**hostrt.env, "HOSTRT_SERVER": "0"},  # the command itself, in the test's namespace
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "outer-service" in done.stdout
    assert "host-loopback-reached" not in done.stdout
    assert_nothing_left(hostrt.root)


def test_stop_leaves_a_recycled_pid_alone() -> None:
    """A handle outlives its process (a crash, a reboot): its pid may name someone else by now."""
    from hostrt.network import slirp

    other = subprocess.Popen(["sleep", "30"])
    try:
        slirp.stop(other.pid)
        assert other.poll() is None, "a process that is not slirp4netns was signalled"
    finally:
        other.kill()
        other.wait()
