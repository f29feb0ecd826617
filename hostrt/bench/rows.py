"""The rows of `bench compare` from its measurements: values, units, and how each was measured.

Pure: everything here is computed from numbers `compare.py` measured, so the wording of a
row's method sits next to the arithmetic that produced its values.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from hostrt.bench.scratch import BenchError


@dataclass(frozen=True)
class Params:
    """How much to measure: `quick` is for tests and a first look, the default for numbers to keep."""

    rounds: int
    density: int  # idle containers started to measure the cost of one
    share_mb: int
    min_cs: int
    spin: int
    budget_mib: int

    @classmethod
    def make(cls, quick: bool, budget_mib: int | None) -> "Params":
        budget = budget_mib or _mem_total_mib()
        if quick:
            return cls(rounds=1, density=3, share_mb=8, min_cs=30, spin=5000, budget_mib=budget)
        return cls(rounds=3, density=10, share_mb=64, min_cs=100, spin=20000, budget_mib=budget)


class Row(BaseModel):
    """One line of the table: the container side and the VM side, each one or more labelled values."""

    key: str
    title: str
    unit: str
    container: dict[str, float]
    vm: dict[str, float]
    method: str
    note: str = ""


class Comparison(BaseModel):
    image: str
    platform: str
    accelerator: str
    quick: bool
    budget_mib: int
    measured_at: str
    rows: list[Row]


def _mem_total_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise BenchError("cannot read MemTotal from /proc/meminfo")


@dataclass
class Measurements:
    """Raw numbers: seconds, KiB, MB/s, centiseconds per loop; bytes for sizes."""

    native_start: list[float]
    cold: list[float]
    warm: list[float]
    boot: float | None
    native_mem: dict[str, float]  # one, all (KiB)
    vm_mem: dict[str, float]  # qemu, agent (KiB), configured_mib
    native_share: tuple[float, float]  # write, read (MB/s)
    vm_share: tuple[float, float]
    spins: tuple[float, float, float]  # host, native, vm (cs per loop)
    image_compressed: int
    image_unpacked: int
    guest_image: int


def build_rows(p: Params, m: Measurements) -> list[Row]:
    """The table's rows in the lecture's order: memory, start, density, image size, sharing, efficiency."""
    median = statistics.median
    memory = Row(key="memory", title="memory of one instance", unit="MiB",
                 container={"PSS + monitor": m.native_mem["one"] / 1024},
                 vm={"QEMU RSS": m.vm_mem["qemu"] / 1024,
                     **({"host agent PSS": m.vm_mem["agent"] / 1024} if m.vm_mem["agent"] else {})},
                 method="container: PSS (smaps_rollup) of the processes of one idle `sleep` container plus "
                        "hostrt's shared monitor; VM: RSS of the QEMU process of a machine running the same "
                        "container, and apart the PSS of the machine's host agent.",
                 note=f"the machine is configured with {m.vm_mem['configured_mib']:.0f} MiB; its RSS grows toward "
                      "that with use")
    vm_times = {"cold": median(m.cold), "warm": median(m.warm)}
    if m.boot is not None:
        vm_times["boot to SSH"] = m.boot
    start = Row(key="start", title="start (run --rm IMAGE true)", unit="s",
                container={"native": median(m.native_start)}, vm=vm_times,
                method=f"wall time of `hostrt run --rm IMAGE true`, median of {p.rounds}: natively; in a stopped "
                       "machine (the first one also creates it; includes boot, shipping runtime and layers); in "
                       "a running one. 'boot to SSH' is the machine's own boot until its guest accepts SSH.")
    per_container = m.native_mem["all"] / p.density / 1024
    per_vm = (m.vm_mem["qemu"] + m.vm_mem["agent"]) / 1024
    vm_fit = {"by measured RSS": float(p.budget_mib // per_vm)}
    if m.vm_mem["configured_mib"]:
        vm_fit["by configured RAM"] = float(p.budget_mib // m.vm_mem["configured_mib"])
    density = Row(key="density", title=f"instances in {p.budget_mib} MiB", unit="instances",
                  container={"idle containers": float(p.budget_mib // per_container)}, vm=vm_fit,
                  method=f"extrapolated, not started: the budget divided by the cost of one instance, measured "
                         f"on {p.density} idle containers (their PSS + the monitor's, divided by {p.density}: "
                         f"{per_container:.2f} MiB each) and on 1 machine (QEMU RSS + host agent PSS: "
                         f"{per_vm:.0f} MiB).",
                  note="extrapolated linearly from the measured instances")
    how = (f"`dd` of a {p.share_mb} MiB file, repeated for at least {p.min_cs / 100:.1f} s inside the container "
           "and timed there with /proc/uptime; container: ")
    share_write = Row(key="share_write", title="data sharing: write", unit="MB/s",
                      container={"bind mount": m.native_share[0]}, vm={"9p": m.vm_share[0]},
                      method=how + "a container writes into a host directory bind-mounted as a volume; VM: a "
                                   "container in the machine writes into a host directory shared over 9p.")
    share_read = Row(key="share_read", title="data sharing: read", unit="MB/s",
                     container={"bind mount": m.native_share[1]}, vm={"9p": m.vm_share[1]},
                     method=how + "a second container reads the file the first wrote; VM: a container in the "
                                  "machine reads a file the host wrote, over 9p.")
    host, native, vm = m.spins
    efficiency = Row(key="efficiency", title="efficiency (CPU loop)", unit="% of host",
                     container={"native": 100 * host / native}, vm={"guest": 100 * host / vm},
                     method=f"{p.spin} iterations of a shell arithmetic loop, repeated for at least "
                            f"{p.min_cs / 100:.1f} s, timed inside with /proc/uptime; best of {p.rounds} (host: "
                            f"of {p.rounds + 1}, interleaved); speed relative to the host's busybox sh running "
                            "the same loop directly.",
                     note="the native side is measured before any machine runs")
    size = Row(key="image_size", title="image size", unit="MB",
               container={"compressed": m.image_compressed / 1e6, "unpacked": m.image_unpacked / 1e6},
               vm={"guest kernel + initramfs": m.guest_image / 1e6},
               method="container: the image's layers and config as stored (compressed), and its unpacked layer "
                      "directories; VM: the guest kernel and initramfs a machine boots (uncompressed), which a VM "
                      "needs on top of the container image.")
    return [memory, start, density, size, share_write, share_read, efficiency]
