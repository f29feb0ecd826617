#!/usr/bin/env python3
"""VM benchmark, side by side on this host (TCG here: read ratios, not seconds).

cold: a bare QEMU boot of the guest kernel with a busybox initramfs that powers off at once,
      vs `machine start` until SSH is ready, vs `run --rm busybox true` on a stopped machine,
      each after `machine stop --poweroff` (a fresh boot) and after `machine stop` (state restored);
warm: a paramiko exec of `true` on an open connection, vs `run --backend lightvm --rm busybox true`;
size: guest image (raw, gzip), guest RAM in use at idle, QEMU's RSS on the host.

Each figure is taken for both hypervisor drivers (libvirt, and QEMU started by hostrt), their
rounds interleaved; HOSTRT_BENCH_DRIVERS=qemu limits it to one.

Usage (root, libvirtd running): .venv/bin/python tests/bench/bench_vm.py [ROUNDS]
With HOSTRT_TEST_GUEST_CACHE=DIR the guest images built there are used (as by the tests), not
built again in the benchmark's temporary root.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from backends.lightvm.cpio import CpioWriter  # noqa: E402


def hostrt(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostrt", *args], env=env, capture_output=True, text=True, check=True)


def timed(fn) -> float:  # noqa: ANN001
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def bare_boot(kernel: Path, console: str, work: Path) -> float:
    """QEMU straight from the command line: the guest kernel, a busybox init that powers off."""
    initramfs = work / "poweroff.cpio"
    with open(initramfs, "wb") as out:
        writer = CpioWriter(out)
        writer.add_dir("bin", 0o755)
        writer.add_file("bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
        writer.add_file("init", b"#!/bin/busybox sh\n/bin/busybox poweroff -f\n", 0o755)
        writer.close()
    command = ["qemu-system-x86_64", "-M", "q35", "-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot",
               "-kernel", str(kernel), "-initrd", str(initramfs), "-append", f"console={console} quiet panic=-1"]
    return timed(lambda: subprocess.run(command, capture_output=True, check=True, timeout=300))


def _root(work: Path, driver: str) -> dict[str, str]:
    """The environment of a hostrt root whose machines run under `driver`, busybox built, warm."""
    env = {**os.environ, "HOSTRT_ROOT": str(work / driver), "HOSTRT_MACHINE_DRIVER": driver}
    if os.environ.get("HOSTRT_TEST_GUEST_CACHE"):
        (work / driver / "cache").mkdir(parents=True)
        (work / driver / "cache" / "guest").symlink_to(os.environ["HOSTRT_TEST_GUEST_CACHE"])
    hostrt("image", "build", str(REPO / "images" / "busybox"), env=env)
    hostrt("run", "--backend", "lightvm", "--rm", "busybox", "true", env=env)  # builds, boots, ships once
    return env


def _round(env: dict[str, str], results: dict[str, list[float]]) -> None:
    from backends.lightvm.machines import existing, ssh_target
    from backends.lightvm.ssh import connect, run

    def start_after(stop: tuple[str, ...], then: tuple[str, ...]) -> float:
        hostrt("machine", "stop", *stop, "default", env=env)
        return timed(lambda: hostrt(*then, env=env))

    start, first_run = ("machine", "start", "default"), ("run", "--backend", "lightvm", "--rm", "busybox", "true")
    results["ssh_ready"].append(start_after(("--poweroff",), start))  # a fresh boot
    results["ssh_resumed"].append(start_after((), start))  # the idle guest's state saved and restored
    results["first_run"].append(start_after(("--poweroff",), first_run))
    results["first_run_resumed"].append(start_after((), first_run))
    os.environ["HOSTRT_ROOT"] = env["HOSTRT_ROOT"]
    client = connect(ssh_target(existing(Path(env["HOSTRT_ROOT"]) / "machines", "default")))
    results["exec_true"].append(timed(lambda: run(client, "true")))
    client.close()
    results["warm_run"].append(timed(lambda: hostrt(*first_run, env=env)))


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    drivers = (os.environ.get("HOSTRT_BENCH_DRIVERS") or "libvirt,qemu").split(",")
    work = Path(tempfile.mkdtemp(prefix="hostrt-bench-vm-"))
    envs: dict[str, dict[str, str]] = {}
    try:
        for driver in drivers:
            envs[driver] = _root(work, driver)
        machine = json.loads(hostrt("machine", "inspect", "default", env=envs[drivers[0]]).stdout)
        kernel = Path(machine["boot"]["kernel"])
        rows = ("ssh_ready", "ssh_resumed", "first_run", "first_run_resumed", "exec_true", "warm_run")
        results = {d: {k: [] for k in rows} for d in drivers}
        bares: list[float] = []
        for _ in range(rounds):  # interleaved: each round times the bare boot and every driver
            bares.append(bare_boot(kernel, "ttyS0", work))
            for driver in drivers:
                _round(envs[driver], results[driver])
        bare = statistics.median(bares)
        print(f"cold: bare QEMU boot+poweroff {bare:.1f} s")
        for driver in drivers:
            median = {k: statistics.median(v) for k, v in results[driver].items()}
            print(f"[{driver}] machine start to SSH ready: booted {median['ssh_ready']:.1f} s "
                  f"({median['ssh_ready'] / bare:.2f}x), resumed {median['ssh_resumed']:.1f} s "
                  f"({median['ssh_resumed'] / bare:.2f}x) | run --rm true on a stopped machine: booted "
                  f"{median['first_run']:.1f} s ({median['first_run'] / bare:.2f}x), resumed "
                  f"{median['first_run_resumed']:.1f} s ({median['first_run_resumed'] / bare:.2f}x)")
            print(f"[{driver}] warm: paramiko exec true {median['exec_true'] * 1000:.0f} ms | run --backend lightvm "
                  f"--rm true {median['warm_run']:.2f} s ({median['warm_run'] / median['exec_true']:.1f}x)")
        initramfs = kernel.with_name("initramfs.cpio")
        parts = {"kernel": kernel, "initramfs": initramfs}
        raw = {k: p.stat().st_size for k, p in parts.items()}
        packed = {k: len(gzip.compress(p.read_bytes(), 6)) for k, p in parts.items()}
        print("size: " + ", ".join(f"{k} {raw[k] / 1e6:.1f} MB raw / {packed[k] / 1e6:.1f} MB gzip" for k in parts)
              + f"; total {sum(raw.values()) / 1e6:.1f} MB raw, {sum(packed.values()) / 1e6:.1f} MB gzip")
        for driver in drivers:
            env = envs[driver]
            facts = json.loads(hostrt("machine", "inspect", "default", env=env).stdout)
            used = hostrt("machine", "ssh", "default", "--", "free -m | awk '/Mem:/ {print $3}'", env=env).stdout.strip()
            pid = subprocess.run(["pgrep", "-f", f"guest={facts['domain']},"], capture_output=True,
                                 text=True).stdout.split()[0]
            rss = next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("VmRSS"))
            print(f"[{driver}] memory: guest in use at idle {used} MB; QEMU RSS on the host {int(rss) / 1024:.0f} MB")
    finally:
        for env in envs.values():
            subprocess.run([sys.executable, "-m", "hostrt", "machine", "rm", "default"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
