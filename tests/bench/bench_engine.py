#!/usr/bin/env python3
"""Engine benchmark against its peers, interleaved in one run (the machine is noisy: read ratios).

1. `run --rm busybox true`: hostrt (default network = bridge, and --network none; through the
   engine server, without it (HOSTRT_SERVER=0: a process per command, the fast path), and the
   full typer path with neither) against `podman run --rm --network none` of the same image,
   and crun running a bare bundle (the floor).
2. BATCH detached `sleep 1000` containers: wall time of hostrt `run -d` (--network none and
   bridge, and --network none without the server) against crun `run -d` of a bundle, batches
   interleaved; then the PSS of hostrt's monitor with BATCH containers running, per container.

Every figure is reported as median and minimum, and as ratios (per-round median ratio, and
ratio of minimums). `--baseline BIN` adds another hostrt (e.g. an install of main) with its
own root, to compare before/after in the same run. Needs root, podman + conmon + skopeo,
crun, and the shared peer tools (BENCH_DIR, default ../shared/bench).

    tests/bench/bench_engine.py [-n 20] [--batch 50] [--batch-rounds 3] [--baseline /path/bin/hostrt]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def sh(argv: list[str], env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, check=check, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stderr.decode(errors='replace')}")
    return elapsed


class Hostrt:
    """One hostrt installation with its own root (so two never share a monitor)."""

    def __init__(self, label: str, binary: str, root: Path, extra_env: dict | None = None) -> None:
        self.label, self.binary = label, binary
        self.env = {**os.environ, "HOSTRT_ROOT": str(root), **(extra_env or {})}
        self.env.pop("HOSTRT_RUNTIME", None)  # each install uses the runtime beside it

    def __call__(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess[str]:
        return sh([self.binary, *args], env or self.env, check)

    def cleanup(self) -> None:
        ids = self("ps", "-aq", check=False).stdout.split()
        if ids:
            self("rm", "-f", *ids, check=False)


def report(title: str, samples: dict[str, list[float]], against: str, unit: str = "ms") -> None:
    print(f"\n== {title}")
    print(f"{'':<32}{'median':>10}{'min':>10}   ratio vs {against}: median of rounds / of mins")
    base = samples[against]
    for label, xs in samples.items():
        ratios = [x / b for x, b in zip(xs, base)]
        digits = 0 if unit == "ms" else 2
        print(f"{label:<32}{statistics.median(xs):>9.{digits}f}{unit}{min(xs):>8.{digits}f}{unit}"
              f"   {statistics.median(ratios):>5.2f}x / {min(xs) / min(base):>5.2f}x")


def monitor_pss_kb(root: Path) -> int | None:
    found = sh(["pgrep", "-f", f"hostrt.engine.monitor --socket {root}/"], check=False).stdout.split()
    if not found:
        return None
    for line in Path(f"/proc/{found[0]}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20, help="rounds of run --rm")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--batch-rounds", type=int, default=3)
    parser.add_argument("--baseline", help="another hostrt binary to compare (its own root)")
    args = parser.parse_args()
    bench = Path(os.environ.get("BENCH_DIR") or REPO.parent / "shared" / "bench")
    work = Path(tempfile.mkdtemp(prefix="hostrt-bench-"))
    # Out of the checkout: the monitor is started with `python -m`, which would import the
    # hostrt package of the current directory, not the installation under test.
    os.chdir(work)
    hostrt_bin = os.environ.get("HOSTRT") or str(Path(sys.executable).with_name("hostrt"))
    installs = [Hostrt("hostrt", hostrt_bin, work / "root")]
    if args.baseline:
        installs.append(Hostrt("baseline", args.baseline, work / "root-baseline"))
    podman = ["podman", "--root", str(work / "podman"), "--runroot", str(work / "podman-run"), "--storage-driver", "overlay"]
    penv = {**os.environ, "CONTAINERS_CONF": str(bench / "podman" / "containers.conf")}
    try:
        for h in installs:
            h("image", "build", str(REPO / "images" / "busybox"))
            h("run", "--rm", "busybox", "true")  # the first run resolves (and caches) the image
        store = work / "root" / "store"
        sh(["skopeo", "copy", "-q", f"oci:{store}:busybox:latest",
            f"containers-storage:[overlay@{work}/podman+{work}/podman-run]docker.io/library/busybox:latest"], penv)
        sh(["bash", str(bench / "mkbundle.sh"), str(work / "bundle")], {**os.environ, "NONET": "1"})
        sh(["bash", str(bench / "mkbundle.sh"), str(work / "bundle-sleep"), "sleep", "1000"], {**os.environ, "NONET": "1"})

        commands: dict[str, tuple[list[str], dict]] = {"podman --network none": (
            [*podman, "run", "--rm", "--network", "none", "busybox", "true"], penv)}
        for h in installs:
            run = [h.binary, "run", "--rm", "--pull", "never"]
            commands[f"{h.label} --network none"] = ([*run, "--network", "none", "busybox", "true"], h.env)
            commands[f"{h.label} (bridge)"] = ([*run, "busybox", "true"], h.env)
        no_server = {**installs[0].env, "HOSTRT_SERVER": "0"}
        commands["hostrt no server, none"] = ([hostrt_bin, "run", "--rm", "--network", "none", "busybox", "true"],
                                              no_server)
        commands["hostrt typer path, none"] = ([hostrt_bin, "run", "--rm", "--network", "none", "busybox", "true"],
                                               {**no_server, "HOSTRT_NO_FAST_PATH": "1"})
        commands["crun run (bundle)"] = (["crun", "--root", str(work / "crun"), "run", "-b", str(work / "bundle"), "b1"],
                                         os.environ)
        samples: dict[str, list[float]] = {label: [] for label in commands}
        for label, (argv, env) in commands.items():  # warm up caches once
            timed(argv, env)
        for _ in range(args.n):
            for label, (argv, env) in commands.items():
                samples[label].append(timed(argv, env))
        report(f"run --rm busybox true ({args.n} rounds, interleaved)", samples, "podman --network none")

        batches: dict[str, list[float]] = {}
        pss: dict[str, list[float]] = {}

        def crun_batch() -> float:
            start = time.perf_counter()
            for i in range(args.batch):  # not captured: the detached container would hold our pipe open
                subprocess.run(["crun", "--root", str(work / "crun"), "run", "-d", "-b", str(work / "bundle-sleep"), f"c{i}"],
                               check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            elapsed = time.perf_counter() - start
            for i in range(args.batch):
                sh(["crun", "--root", str(work / "crun"), "delete", "-f", f"c{i}"], check=False)
            return elapsed

        def hostrt_batch(h: Hostrt, network: list[str], label: str, env: dict | None = None) -> float:
            start = time.perf_counter()
            for _ in range(args.batch):
                h("run", "-d", "--pull", "never", *network, "busybox", "sleep", "1000", env=env)
            elapsed = time.perf_counter() - start
            kb = monitor_pss_kb(Path(h.env["HOSTRT_ROOT"]))
            if kb is not None:
                pss.setdefault(label, []).append(kb / args.batch / 1024)
            h.cleanup()
            return elapsed

        for _ in range(args.batch_rounds):
            batches.setdefault("crun run -d", []).append(crun_batch())
            for h in installs:
                for network, name in ((["--network", "none"], "--network none"), ([], "(bridge)")):
                    label = f"{h.label} run -d {name}"
                    batches.setdefault(label, []).append(hostrt_batch(h, network, label))
            label = "hostrt run -d --network none, no server"
            batches.setdefault(label, []).append(hostrt_batch(installs[0], ["--network", "none"], label, no_server))
        report(f"{args.batch} x run -d sleep 1000 ({args.batch_rounds} rounds, interleaved batches)", batches,
               "crun run -d", unit="s")
        print(f"\n== monitor PSS per container with {args.batch} running (MB, max over rounds)")
        for label, values in pss.items():
            print(f"{label:<40}{max(values):.3f}")
    finally:
        for h in installs:
            h.cleanup()
        for i in range(args.batch):
            subprocess.run(["crun", "--root", str(work / "crun"), "delete", "-f", f"c{i}"], capture_output=True)
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            if str(work) in line.split()[1]:
                subprocess.run(["umount", "-l", line.split()[1]], capture_output=True)
        sh([*podman, "rmi", "-af"], penv, check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
