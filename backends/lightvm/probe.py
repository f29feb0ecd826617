"""The accelerator probe: boot the guest kernel under the host's hardware accelerator, with a
time limit, and believe the accelerator only if the kernel got as far as looking for its root.

A present /dev/kvm proves nothing (on some hosts guests hang right after real-mode setup),
so the proof is a boot. No initramfs is needed: a kernel that panics with "Unable to mount
root fs" has run its whole init in protected/long mode under the accelerator. The verdict is
cached by `hostrt.accelerator`, so the boot is paid once per host and kernel.
"""

from __future__ import annotations

import selectors
import shutil
import subprocess
import time
from pathlib import Path

from hostrt.platform import EMULATORS, AcceleratorName, AcceleratorVerdict

# The accelerator each host OS offers, as QEMU's -accel names it.
_CANDIDATES: dict[str, AcceleratorName] = {"linux": "kvm", "darwin": "hvf", "windows": "whpx"}
# Machine type and console per guest architecture (the probe boots the host's own architecture).
_BOOT: dict[str, tuple[str, str]] = {"amd64": ("q35", "ttyS0"), "arm64": ("virt", "ttyAMA0")}
PROOF = b"Unable to mount root fs"
DEFAULT_TIME_LIMIT = 20.0


def probe_command(emulator: str, accelerator: str, arch: str, kernel: Path) -> list[str]:
    """The QEMU command line of one probe boot: no disk, no network, serial on stdout."""
    machine, console = _BOOT[arch]
    command = [emulator, "-M", machine, "-accel", accelerator, "-m", "128", "-nographic", "-nodefaults",
               "-no-reboot", "-serial", "stdio", "-kernel", str(kernel),
               "-append", f"console={console} panic=-1 loglevel=3"]
    if arch == "arm64":
        command[3:3] = ["-cpu", "host"]
    return command


def _boots(command: list[str], time_limit: float) -> tuple[bool, float]:
    """Run QEMU until the kernel shows the proof line or the time runs out; (proved, seconds)."""
    started = time.monotonic()
    seen = b""
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as qemu:
        assert qemu.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(qemu.stdout, selectors.EVENT_READ)
        try:
            while (remaining := time_limit - (time.monotonic() - started)) > 0:
                if not selector.select(timeout=min(remaining, 0.5)):
                    continue
                chunk = qemu.stdout.read1(65536)
                if not chunk:
                    break
                seen = (seen + chunk)[-4096:]
                if PROOF in seen:
                    return True, time.monotonic() - started
        finally:
            qemu.kill()
            qemu.wait()
    return False, time.monotonic() - started


def probe_accelerator(host_os: str, host_arch: str, kernel: Path, time_limit: float = DEFAULT_TIME_LIMIT) -> AcceleratorVerdict:
    """Decide the accelerator by booting `kernel` (built for `host_arch`) under the host's candidate."""
    candidate = _CANDIDATES.get(host_os)
    emulator = EMULATORS.get(host_arch)
    if candidate is None or emulator is None or host_arch not in _BOOT:
        return AcceleratorVerdict(accelerator="tcg", reason=f"no hardware accelerator known for {host_os}/{host_arch}")
    if candidate == "kvm" and not Path("/dev/kvm").exists():
        return AcceleratorVerdict(accelerator="tcg", reason="/dev/kvm does not exist: guests run under TCG")
    if shutil.which(emulator) is None:
        return AcceleratorVerdict(accelerator="tcg", candidate=candidate, reason=f"{emulator} not found: cannot probe {candidate}")
    proved, seconds = _boots(probe_command(emulator, candidate, host_arch, kernel), time_limit)
    if proved:
        return AcceleratorVerdict(
            accelerator=candidate, candidate=candidate, reason=f"a guest kernel booted under {candidate} in {seconds:.1f} s"
        )
    return AcceleratorVerdict(
        accelerator="tcg",
        candidate=candidate,
        reason=f"a guest kernel did not boot under {candidate} within {time_limit:.0f} s: guests run under TCG",
    )


def resolve_virt_type(host_os: str, host_arch: str, guest_arch: str, kernel: Path, cache_dir: Path, kernel_release: str) -> str:
    """The libvirt domain type for a guest: the host's accelerator if a boot proved it, else qemu (TCG).

    Probes once (and caches the verdict) when the guest has the host's architecture and no
    verdict exists yet; a guest of another architecture is always emulated.
    """
    from hostrt.accelerator import CachedVerdict, read_verdict, write_verdict

    if guest_arch != host_arch:
        return "qemu"
    verdict = read_verdict(cache_dir, host_os, kernel_release, host_arch)
    if verdict is None:
        verdict = probe_accelerator(host_os, host_arch, kernel)
        if shutil.which(EMULATORS.get(host_arch, "")) is not None:  # else no answer: installing QEMU changes it
            write_verdict(cache_dir, CachedVerdict(host_os=host_os, kernel=kernel_release, architecture=host_arch,
                                                   verdict=verdict))
    from backends.lightvm.drivers.qemu_command import accelerator_for

    return accelerator_for(host_os, host_arch, guest_arch, verdict.accelerator)
