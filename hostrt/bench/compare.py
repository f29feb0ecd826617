"""`hostrt bench compare`: the VM-versus-container table, measured now on this host for one image.

Each row is measured with real containers (native backend) and a real machine (lightvm
backend) in a scratch root (see scratch.py). Timings inside a container read /proc/uptime
(10 ms resolution) around loops that run for at least `min_cs` centiseconds, so neither
hostrt's start-up nor the clock's resolution is in them. The method of each row travels
with it (`Row.method`) and is printed with `--format markdown` and in the README.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hostrt.bench.procmem import find_by_cmdline, pss_kib, rss_kib, with_descendants
from hostrt.bench.rows import Comparison, Measurements, Params, Row, build_rows
from hostrt.bench.scratch import BenchError, ScratchRoot
from hostrt.paths import Paths

MIB = 1024 * 1024
NATIVE = ["--network", "none"]  # no bridge, no NAT rule: the benchmark leaves the host's network alone
VM = ["--backend", "lightvm"]

# Centiseconds from /proc/uptime, and a loop that repeats BODY until MIN centiseconds have passed.
_CLOCK = 't(){ read u r </proc/uptime; echo ${u%.*}${u#*.}; }'
_LOOP = _CLOCK + '; s=$(t); n=0; while :; do {body}; n=$((n+1)); e=$(t); [ $((e-s)) -ge {min_cs} ] && break; done; echo "$n $((e-s))"'
_SPIN = 'i=0; while [ $i -lt {count} ]; do i=$((i+1)); done'


def _say(text: str) -> None:
    """Progress on stderr; a reader that went away must not stop the clean-up that follows."""
    try:
        print(f"hostrt bench: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _loop_rate(output: str) -> tuple[int, int]:
    """(iterations, centiseconds) from a loop script's last line."""
    try:
        count, cs = output.split()[-2:]
        return int(count), max(1, int(cs))
    except ValueError:
        raise BenchError(f"unexpected output from a timing loop: {output.strip()[-200:]!r}") from None


class Bench:
    """Measures every row in one scratch root; `run()` returns the comparison."""

    def __init__(self, image: str, params: Params, source: Paths) -> None:
        self.image = image
        self.params = params
        self.source = source
        self.h: ScratchRoot | None = None
        self.detached: list[str] = []

    # -- helpers ------------------------------------------------------------------------
    def _loop(self, side: list[str], body: str, volume: str | None = None) -> tuple[int, int]:
        assert self.h is not None
        script = _LOOP.replace("{body}", body).replace("{min_cs}", str(self.params.min_cs))
        flags = ["-v", f"{volume}:/data"] if volume else []
        return _loop_rate(self.h.ok("run", "--rm", *side, *flags, self.image, "sh", "-c", script))

    def _container_pids(self, container_id: str) -> set[int]:
        assert self.h is not None
        state = json.loads(self.h.ok("inspect", container_id))[0]["State"]
        return with_descendants([int(state["Pid"])]) if state.get("Pid") else set()

    # -- the native side, measured before any machine runs (an idle TCG guest takes CPU) ---
    def native_start(self) -> list[float]:
        assert self.h is not None
        _say("start: native")
        self.h.ok("run", "--rm", *NATIVE, self.image, "true")  # unpacks the layers once, not counted
        return [self.h.timed_ok("run", "--rm", *NATIVE, self.image, "true") for _ in range(self.params.rounds)]

    def spin(self, side: list[str] | None) -> float:
        """Centiseconds per spin loop: on the host's busybox (side None) or in a container."""
        script = _LOOP.replace("{body}", _SPIN.replace("{count}", str(self.params.spin))) \
                      .replace("{min_cs}", str(self.params.min_cs))
        if side is None:
            done = subprocess.run([shutil.which("busybox") or "busybox", "sh", "-c", script], capture_output=True,
                                  text=True, timeout=600)
            if done.returncode != 0:
                raise BenchError(f"busybox sh on the host failed: {done.stderr.strip()[-200:]}")
            count, cs = _loop_rate(done.stdout)
        else:
            count, cs = self._loop(side, _SPIN.replace("{count}", str(self.params.spin)))
        return cs / count

    def native_memory(self) -> dict[str, float]:
        """KiB: PSS of one idle container + the monitor, and of all `density` of them + the monitor."""
        assert self.h is not None
        p = self.params
        _say(f"memory: {p.density} idle native containers")
        ids = [self.h.ok("run", "-d", *NATIVE, self.image, "sleep", "3600").strip() for _ in range(p.density)]
        self.detached += ids
        time.sleep(1.0)  # let the monitor settle after the starts
        monitor_kib = sum(pss_kib(pid) for pid in find_by_cmdline("hostrt.engine.monitor", f"--socket {self.h.root}/"))
        first = self._container_pids(ids[0])
        every = set().union(*(self._container_pids(i) for i in ids))
        result = {"one": sum(pss_kib(pid) for pid in first) + monitor_kib,
                  "all": sum(pss_kib(pid) for pid in every) + monitor_kib}
        self.h.ok("rm", "-f", *ids, timeout=600)
        self.detached.clear()
        return result

    def share(self, side: list[str], host_writes: bool) -> tuple[float, float]:
        """MB/s (write, read) of `dd` through a host directory mounted as a volume. Natively one
        container writes and a second reads; in the VM the container writes, and reads a file the host wrote."""
        assert self.h is not None
        import tempfile

        mb = self.params.share_mb
        directory = Path(tempfile.mkdtemp(dir=self.h.root, prefix="share-"))
        try:
            if host_writes:
                with open(directory / "f", "wb") as out:
                    for _ in range(mb):
                        out.write(b"\0" * MIB)
                read = self._loop(side, "dd if=/data/f of=/dev/null bs=1M 2>/dev/null", str(directory))
                write = self._loop(side, f"dd if=/dev/zero of=/data/f bs=1M count={mb} 2>/dev/null", str(directory))
            else:
                write = self._loop(side, f"dd if=/dev/zero of=/data/f bs=1M count={mb} 2>/dev/null", str(directory))
                read = self._loop(side, "dd if=/data/f of=/dev/null bs=1M 2>/dev/null", str(directory))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return mb * write[0] / (write[1] / 100), mb * read[0] / (read[1] / 100)

    # -- the VM side ---------------------------------------------------------------------
    def vm_start(self) -> tuple[list[float], list[float]]:
        """`run --rm IMAGE true` in a stopped (the first time: not yet created) machine, then in a running one."""
        assert self.h is not None
        cold = []
        for index in range(self.params.rounds):
            if index:  # a real boot each time, not the restore of a saved state (see `machine stop`)
                self.h.ok("machine", "stop", "--poweroff", "default", timeout=300)
            _say(f"start: cold VM {index + 1}/{self.params.rounds} (boots the machine)")
            cold.append(self.h.timed_ok("run", "--rm", *VM, self.image, "true"))
        _say("start: warm VM")
        warm = [self.h.timed_ok("run", "--rm", *VM, self.image, "true") for _ in range(self.params.rounds)]
        return cold, warm

    def vm_memory(self) -> dict[str, float]:
        """KiB: RSS of the QEMU running one idle container, PSS of the machine's host agent; MiB configured."""
        assert self.h is not None
        _say("memory: 1 idle container in the VM")
        container = self.h.ok("run", "-d", *VM, self.image, "sleep", "3600").strip()
        self.detached.append(container)
        time.sleep(1.0)
        machine = self.h.machine("default") or {}
        qemu = find_by_cmdline(f"guest={machine.get('domain')},")
        if not qemu:
            raise BenchError(f"cannot find the QEMU process of machine default ({machine.get('domain')})")
        agent = 0
        try:
            agent = pss_kib(int((self.h.root / "machines" / "default" / "agent.pid").read_text()))
        except (OSError, ValueError):
            pass
        result = {"qemu": float(rss_kib(qemu[0])), "agent": float(agent),
                  "configured_mib": float(machine.get("settings", {}).get("memory_mib", 0))}
        self.h.ok("rm", "-f", container, timeout=600)
        self.detached.clear()
        return result

    def sizes(self) -> tuple[int, int, int]:
        """Bytes: the image as stored (compressed), its unpacked layers, the guest kernel + initramfs."""
        assert self.h is not None
        details = json.loads(self.h.ok("inspect", self.image))[0]
        unpacked = 0
        for layer in details["layers"]:
            layer_dir = self.h.root / "layers" / layer["digest"].split(":", 1)[1]
            unpacked += sum(f.lstat().st_size for f in layer_dir.rglob("*") if f.is_file() and not f.is_symlink())
        kernel = Path((self.h.machine("default") or {}).get("boot", {}).get("kernel", ""))
        guest = sum(p.stat().st_size for p in (kernel, kernel.with_name("initramfs.cpio")) if p.is_file())
        return int(details["size"]), unpacked, guest

    # -- all ----------------------------------------------------------------------------
    def measure(self) -> tuple[list[Row], dict]:
        """Every measurement, the native side first (an idle TCG guest takes CPU); then the rows."""
        assert self.h is not None
        p = self.params
        native_start = self.native_start()
        _say("efficiency: a CPU loop on the host and in a container")
        host_spin = [self.spin(None)]
        native_spin = []
        for _ in range(p.rounds):  # interleaved, best of each: this host's load drifts
            native_spin.append(self.spin(NATIVE))
            host_spin.append(self.spin(None))
        _say("data sharing: two native containers through a bind mount")
        native_write, native_read = self.share(NATIVE, host_writes=False)
        native_mem = self.native_memory()
        cold, warm = self.vm_start()
        vm_mem = self.vm_memory()
        _say("data sharing: host <-> a container in the VM through 9p")
        vm_write, vm_read = self.share(VM, host_writes=True)
        _say("efficiency: a CPU loop in the VM")
        vm_spin = [self.spin(VM) for _ in range(p.rounds)]
        from backends.lightvm.start_stats import read_stats

        boot = read_stats(self.h.root / "machines" / "default").median("boot")
        compressed, unpacked, guest = self.sizes()
        measured = Measurements(native_start=native_start, cold=cold, warm=warm, boot=boot, native_mem=native_mem,
                                vm_mem=vm_mem, native_share=(native_write, native_read), vm_share=(vm_write, vm_read),
                                spins=(min(host_spin), min(native_spin), min(vm_spin)), image_compressed=compressed,
                                image_unpacked=unpacked, guest_image=guest)
        return build_rows(p, measured), {"native": native_start, "cold": cold, "warm": warm}

    def run(self) -> tuple[Comparison, dict]:
        import platform as stdlib_platform

        from hostrt.accelerator import cached_probe
        from hostrt.errors import BackendUnavailableError
        from hostrt.platform import decide, detect_host, lightvm_status, native_status

        if shutil.which("busybox") is None:
            raise BenchError("bench compare times a CPU loop against the host's busybox: install busybox-static")
        host = detect_host(probe=cached_probe(self.source.cache, stdlib_platform.release()))
        for status in (native_status(host), lightvm_status(host)):  # before minutes of measuring, not after
            if not status.usable:
                raise BackendUnavailableError(f"bench compare needs the {status.name} backend: "
                                              + "; ".join(status.reasons))
        decision = decide(host, host.platform, "lightvm")
        import signal

        # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the scratch root and its machine are removed.
        signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
        _say(f"copying {self.image} into a scratch root")
        self.h = ScratchRoot(self.source, self.image)
        try:
            rows, samples = self.measure()
        finally:
            _say("removing the scratch root and its machine")
            self.h.close()
        comparison = Comparison(
            image=self.image, platform=str(host.platform), accelerator=decision.accelerator or "tcg",
            quick=self.params.rounds == 1, budget_mib=self.params.budget_mib,
            measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), rows=rows)
        return comparison, samples
