"""Benchmark: 100 MB from a container's busybox httpd to the host, through each way in.

Run by hand as root (about a minute; builds the busybox image unless --root has it):
    HOSTRT_RUNTIME=runc .venv/bin/python tests/bench/bench_network.py [--mb 100] [--runs 3] [--vm]

The same server (busybox httpd) and client (a Python socket reading to EOF) on:
  loopback   httpd on the host at 127.0.0.1, no container (the reference)
  published  127.0.0.1:PORT -> hostrt's userspace proxy (the monitor) -> container
  dnat       127.0.0.1:PORT -> an iptables DNAT rule (+ route_localnet, SNAT) -> container,
             installed by this script for the run and removed after (the alternative design)
  direct     the container's bridge address, routed by the host kernel (no translation)
  vm         (--vm) 127.0.0.1:PORT -> QEMU's user-net forward -> the guest's proxy -> a container in
             the `default` machine (booted if needed: minutes under TCG)
  vm-forward (--vm) the QEMU forward alone, to an httpd in the guest (no container, no guest proxy)
  guest-lo   (--vm) that httpd over the guest's own loopback (the VM's "no containers" reference)
Prints the best of N runs in MB/s and each path's ratio to loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BRIDGE, SUBNET = "hrtbench0", "10.231.250.0/24"
PUBLISHED, LOOPBACK, DNAT, VM, GUEST = 18931, 18932, 18933, 18934, 18935


def fetch(host: str, port: int) -> int:
    """GET /f and read to EOF; the number of bytes received."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"GET /f HTTP/1.0\r\n\r\n")
        buffer = bytearray(1 << 20)
        total = 0
        while n := sock.recv_into(buffer):
            total += n
    return total


def best_rate(host: str, port: int, size: int, runs: int) -> float:
    best = 0.0
    for _ in range(runs):
        start = time.perf_counter()
        got = fetch(host, port)
        elapsed = time.perf_counter() - start
        assert got > size, f"short read from {host}:{port}: {got} bytes"
        best = max(best, size / elapsed / 1e6)
    return best


def wait_for(host: str, port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on {host}:{port}")


def wait_for_file(host: str, port: int, size: int, timeout: float = 600) -> None:
    """Until a GET returns the whole file (a QEMU forward accepts before anything serves behind it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fetch(host, port) > size:
                return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"{host}:{port} did not serve the file")


GUEST_FETCH = """
import socket, sys, time
best = 0.0
for _ in range({runs}):
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", {port})) as sock:
        sock.sendall(b"GET /f HTTP/1.0\\r\\n\\r\\n")
        buffer, total = bytearray(1 << 20), 0
        while n := sock.recv_into(buffer):
            total += n
    best = max(best, {size} / (time.perf_counter() - start) / 1e6)
print(best)
"""


def vm_rates(hostrt, root: Path, name: str, mb: int, runs: int) -> dict[str, float]:  # noqa: ANN001
    """Through the VM: the published port of a container in the `default` machine (`vm`); to see
    where the time goes, a QEMU forward straight to an httpd in the guest, no container and no
    guest proxy (`vm-forward`), and that httpd read over the guest's own loopback (`guest-lo`).
    The files are made in the guest (zeros), so no shared folder is measured."""
    from backends.lightvm.libvirt_conn import domain_prefix
    from backends.lightvm.ports import _hmp

    size = mb << 20
    hostrt("run", "--backend", "lightvm", "-d", "--name", name, "-p", f"127.0.0.1:{VM}:80", "busybox", "sh", "-c",
           f"mkdir /www && dd if=/dev/zero of=/www/f bs=1M count={mb} 2>/dev/null && exec httpd -f -p 80 -h /www")
    domain = domain_prefix(root / "machines") + "default"
    guest_pid = hostrt("machine", "ssh", "default", "--", f"mkdir -p /tmp/bench && dd if=/dev/zero of=/tmp/bench/f "
                       f"bs=1M count={mb} 2>/dev/null && {{ httpd -f -p {GUEST} -h /tmp/bench </dev/null >/dev/null "
                       "2>&1 & echo $!; }").strip()
    _hmp(domain, f"hostfwd_add hostrt0 tcp:127.0.0.1:{GUEST}-10.0.2.15:{GUEST}")
    try:
        wait_for_file("127.0.0.1", VM, size)
        wait_for_file("127.0.0.1", GUEST, size)
        return {"vm": best_rate("127.0.0.1", VM, size, runs),
                "vm-forward": best_rate("127.0.0.1", GUEST, size, runs),
                "guest-lo": float(hostrt("machine", "ssh", "default", "--", "python3 -c " + shlex.quote(
                    GUEST_FETCH.format(runs=runs, port=GUEST, size=size))))}
    finally:
        _hmp(domain, f"hostfwd_remove hostrt0 tcp:127.0.0.1:{GUEST}")
        hostrt("machine", "ssh", "default", "--", f"kill {guest_pid}; rm -rf /tmp/bench")


def iptables(action: str, *rule: str) -> None:
    subprocess.run(["iptables", "-w", "-t", "nat", action, *rule], check=action != "-D", capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--root", type=Path, help="a hostrt root that already has the busybox image")
    parser.add_argument("--vm", action="store_true", help="also through a VM container (lightvm backend)")
    args = parser.parse_args()
    size = args.mb << 20
    root = args.root or Path(tempfile.mkdtemp(prefix="hostrt-bench-"))
    env = {**os.environ, "HOSTRT_ROOT": str(root), "HOSTRT_BRIDGE": BRIDGE, "HOSTRT_BRIDGE_SUBNET": SUBNET,
           "HOSTRT_IP_FORWARD": "0", "HOSTRT_DNS": ""}

    def hostrt(*argv: str) -> str:
        return subprocess.run([sys.executable, "-m", "hostrt", *argv], env=env, check=True, capture_output=True,
                              text=True).stdout

    if args.root is None:
        hostrt("image", "build", str(REPO / "images" / "busybox"))
    www = Path(tempfile.mkdtemp(prefix="hostrt-bench-www-"))
    (www / "f").write_bytes(os.urandom(1 << 20) * args.mb)
    host_httpd = subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{LOOPBACK}", "-h", str(www)])
    name = f"bench-{os.getpid()}"
    rules: list[list[str]] = []
    try:
        hostrt("run", "-d", "--name", name, "-p", f"127.0.0.1:{PUBLISHED}:80", "-v", f"{www}:/www:ro", "busybox",
               "httpd", "-f", "-p", "80", "-h", "/www")
        container_dir = next(p.parent for p in (root / "containers").glob("*/record.json")
                             if json.loads(p.read_text())["name"] == name)
        address = json.loads((container_dir / "network.json").read_text())["address"]
        rules = [["OUTPUT", "-d", "127.0.0.1", "-p", "tcp", "--dport", str(DNAT), "-j", "DNAT",
                  "--to-destination", f"{address}:80", "-m", "comment", "--comment", "hostrt-bench"],
                 ["POSTROUTING", "-s", "127.0.0.0/8", "-o", BRIDGE, "-j", "MASQUERADE",
                  "-m", "comment", "--comment", "hostrt-bench"]]
        for rule in rules:
            iptables("-I", *rule)
        Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet").write_text("1\n")
        for host, port in (("127.0.0.1", LOOPBACK), ("127.0.0.1", PUBLISHED), (address, 80)):
            wait_for(host, port)
        rates = {"loopback": best_rate("127.0.0.1", LOOPBACK, size, args.runs),
                 "published": best_rate("127.0.0.1", PUBLISHED, size, args.runs),
                 "dnat": best_rate("127.0.0.1", DNAT, size, args.runs),
                 "direct": best_rate(address, 80, size, args.runs)}
        if args.vm:
            rates.update(vm_rates(hostrt, root, f"{name}-vm", args.mb, args.runs))
    finally:
        for rule in rules:
            iptables("-D", *rule)
        host_httpd.terminate()
        host_httpd.wait()
        subprocess.run([sys.executable, "-m", "hostrt", "rm", "-f", name, f"{name}-vm"], env=env, capture_output=True)
        (www / "f").unlink()
        www.rmdir()
    print(f"{args.mb} MB, best of {args.runs}:")
    for path, rate in rates.items():
        in_guest = f"   to the guest's loopback {rate / rates['guest-lo']:.3f}" if path.startswith("vm") else ""
        print(f"  {path:10s} {rate:8.0f} MB/s   ratio to loopback {rate / rates['loopback']:.3f}{in_guest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
