"""What this host is, what an image needs, and which backend should run it (with reasons).

Pure logic lives in `decide`; reading the real host lives in `detect_host`. The accelerator
verdict comes from a probe behind `AcceleratorProbe`: a present /dev/kvm is no proof that
guests run (on some hosts they hang after real-mode setup), so only a boot decides.
"""

from __future__ import annotations

import os
import platform as _stdlib_platform
import shutil
import sys
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from hostrt.errors import BackendUnavailableError, UnsupportedPlatformError, UsageError

BackendName = Literal["native", "lightvm"]
CgroupLayout = Literal["v1", "v2", "hybrid", "none"]
AcceleratorName = Literal["kvm", "hvf", "whpx", "tcg", "unprobed"]

# uname -m (and Windows' PROCESSOR_ARCHITECTURE) spellings -> OCI (GOARCH) architecture, variant.
_MACHINE_TO_OCI: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "i386": ("386", None),
    "i686": ("386", None),
    "x86": ("386", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv8l": ("arm", "v7"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64": ("mips64", None),
}

# OCI architecture -> the QEMU system emulator that boots a guest of that architecture.
EMULATORS: dict[str, str] = {
    "amd64": "qemu-system-x86_64",
    "386": "qemu-system-i386",
    "arm64": "qemu-system-aarch64",
    "arm": "qemu-system-arm",
    "ppc64le": "qemu-system-ppc64",
    "s390x": "qemu-system-s390x",
    "riscv64": "qemu-system-riscv64",
}

# The hardware accelerator each host OS offers QEMU.
_HOST_ACCELERATOR: dict[str, AcceleratorName] = {"linux": "kvm", "darwin": "hvf", "windows": "whpx"}

# Debian package that provides each emulator, for "how to install" hints.
_EMULATOR_PACKAGE: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-i386": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-system-arm": "qemu-system-arm",
}


class ImagePlatform(BaseModel):
    """An OCI platform: os/architecture[/variant]."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ImagePlatform":
        """Parse `os/arch[/variant]` (as `--platform` takes it), normalising arch spellings."""
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64")
        arch, implied_variant = normalise_arch(parts[1])
        variant = parts[2] if len(parts) == 3 else implied_variant
        if arch == "arm64" and variant == "v8":
            variant = None  # arm64 is v8 by definition; keep one spelling
        return cls(os=parts[0], architecture=arch, variant=variant)

    def __str__(self) -> str:
        tail = f"/{self.variant}" if self.variant else ""
        return f"{self.os}/{self.architecture}{tail}"


def normalise_arch(machine: str) -> tuple[str, str | None]:
    """Map a machine name (`x86_64`, `aarch64`, `armv7l`, ...) to an OCI architecture and variant."""
    key = machine.strip().lower()
    return _MACHINE_TO_OCI.get(key, (key, None))


class AcceleratorVerdict(BaseModel):
    """What the accelerator probe concluded, and why; cached so the boot is paid once."""

    accelerator: AcceleratorName
    candidate: AcceleratorName | None = Field(
        default=None, description="the hardware accelerator the host appears to offer, before proof"
    )
    reason: str


class HostInfo(BaseModel):
    """The facts about this host that decide how containers can run here."""

    os: str
    kernel: str
    architecture: str
    variant: str | None = None
    cgroup: CgroupLayout = "none"
    user_namespaces: bool = False
    accelerator: AcceleratorVerdict

    @property
    def platform(self) -> ImagePlatform:
        return ImagePlatform(os=self.os, architecture=self.architecture, variant=self.variant)


class Decision(BaseModel):
    """Which backend runs an image here, with the emulator/accelerator for a VM, and why."""

    backend: BackendName
    emulator: str | None = None
    accelerator: AcceleratorName | None = None
    reasons: list[str]


class AcceleratorProbe(Protocol):
    """Decides which accelerator guests really run under; the VM backend supplies a booting one."""

    def __call__(self, host_os: str, host_arch: str) -> AcceleratorVerdict: ...


def unprobed_accelerator(host_os: str, host_arch: str) -> AcceleratorVerdict:
    """The verdict before any boot probe has run: name the candidate, claim nothing."""
    candidate = _HOST_ACCELERATOR.get(host_os)
    if candidate == "kvm" and not Path("/dev/kvm").exists():
        return AcceleratorVerdict(
            accelerator="tcg", candidate=None, reason="/dev/kvm does not exist: guests run under TCG emulation"
        )
    if candidate is None:
        return AcceleratorVerdict(
            accelerator="tcg", reason=f"no hardware accelerator known for {host_os}: guests run under TCG"
        )
    return AcceleratorVerdict(
        accelerator="unprobed",
        candidate=candidate,
        reason=f"{candidate} looks available but no guest has booted under it yet; TCG until a boot proves it",
    )


def _host_os() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform in ("win32", "cygwin"):
        return "windows"
    return sys.platform


def _cgroup_layout(mountinfo: Path = Path("/proc/self/mountinfo")) -> CgroupLayout:
    """v2 when /sys/fs/cgroup is cgroup2, hybrid when cgroup2 sits beside v1 controllers, else v1."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return "none"
    v1 = False
    v2_root = False
    v2_elsewhere = False
    for line in lines:
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        mount_point, fstype = fields[4], fields[sep + 1]
        if fstype == "cgroup2":
            if mount_point == "/sys/fs/cgroup":
                v2_root = True
            else:
                v2_elsewhere = True
        elif fstype == "cgroup":
            v1 = True
    if v2_root and not v1:
        return "v2"
    if v1 and (v2_root or v2_elsewhere):
        return "hybrid"
    if v1:
        return "v1"
    return "v2" if v2_elsewhere else "none"


def _user_namespaces_available() -> bool:
    """True when the kernel allows creating user namespaces (the limit is non-zero)."""
    try:
        if int(Path("/proc/sys/user/max_user_namespaces").read_text()) <= 0:
            return False
    except (OSError, ValueError):
        return False
    debian_switch = Path("/proc/sys/kernel/unprivileged_userns_clone")
    getuid = getattr(os, "geteuid", None)
    if getuid is not None and getuid() != 0 and debian_switch.exists():
        return debian_switch.read_text().strip() == "1"
    return True


def detect_host(probe: AcceleratorProbe = unprobed_accelerator) -> HostInfo:
    """Read this host's facts; cheap (a few /proc reads), safe to call on every command."""
    host_os = _host_os()
    arch, variant = normalise_arch(_stdlib_platform.machine())
    is_linux = host_os == "linux"
    return HostInfo(
        os=host_os,
        kernel=_stdlib_platform.release(),
        architecture=arch,
        variant=variant,
        cgroup=_cgroup_layout() if is_linux else "none",
        user_namespaces=_user_namespaces_available() if is_linux else False,
        accelerator=probe(host_os, arch),
    )


def _same_architecture(host: ImagePlatform, image: ImagePlatform) -> bool:
    """Whether the host CPU executes the image's binaries without emulation."""
    if host.architecture != image.architecture:
        return False
    if image.architecture == "arm" and host.variant and image.variant:
        return image.variant <= host.variant  # a v7 CPU runs v6 and v5 code
    return True


def _vm_accelerator(host: HostInfo, image: ImagePlatform) -> tuple[AcceleratorName, str]:
    """The accelerator a guest for `image` gets on `host`, and the sentence explaining it."""
    verdict = host.accelerator
    if not _same_architecture(host.platform, image):
        return "tcg", (
            f"{image.architecture} on {host.architecture} needs TCG emulation, expect it to be slow"
        )
    if verdict.accelerator in ("kvm", "hvf", "whpx"):
        return verdict.accelerator, f"same CPU architecture: the guest runs under {verdict.accelerator}"
    return "tcg", f"guest runs under TCG: {verdict.reason}"


def decide(host: HostInfo, image: ImagePlatform, override: BackendName | None = None) -> Decision:
    """Choose the backend for `image` on `host` (or check the user's `override`), with reasons."""
    if image.os != "linux":
        raise UnsupportedPlatformError(
            f"image platform {image} cannot run: hostrt runs Linux images only (natively or in a Linux VM)"
        )
    emulator = EMULATORS.get(image.architecture)
    seen = f"host is {host.platform}, image is {image}"
    native_ok = host.os == "linux" and _same_architecture(host.platform, image)

    if override == "native" and not native_ok:
        why = "the host is not Linux" if host.os != "linux" else "the host CPU cannot execute its binaries"
        raise BackendUnavailableError(f"--backend native cannot run {image} here ({seen}): {why}")
    if override not in (None, "native", "lightvm"):
        raise UsageError(f"unknown backend {override!r}: expected native or lightvm")

    if native_ok and override != "lightvm":
        reasons = [f"{seen}: the host kernel and CPU run it directly, as a native container"]
        if host.cgroup == "none":
            reasons.append("no cgroup hierarchy is mounted: resource limits will not be applied")
        return Decision(backend="native", reasons=reasons)

    if emulator is None:
        raise UnsupportedPlatformError(
            f"image platform {image} cannot run: no QEMU system emulator is known for {image.architecture}"
        )
    accelerator, accel_reason = _vm_accelerator(host, image)
    if override == "lightvm" and native_ok:
        first = f"{seen}: --backend lightvm asked for a Linux VM although it could run natively"
    elif host.os != "linux":
        first = f"{seen}: a Linux VM is needed"
    else:
        first = f"{seen}: the host CPU cannot execute {image.architecture} binaries: a linux/{image.architecture} VM is needed"
    return Decision(backend="lightvm", emulator=emulator, accelerator=accelerator, reasons=[first, accel_reason])


class BackendStatus(BaseModel):
    """Whether a backend can be used on this host, and what is missing if not."""

    name: BackendName
    usable: bool
    reasons: list[str]


def _module_present(name: str) -> bool:
    """Whether a module could be imported, without paying for importing it."""
    import importlib.util

    return importlib.util.find_spec(name) is not None


def native_status(host: HostInfo) -> BackendStatus:
    """The native backend needs a Linux kernel with namespaces; cgroups make limits work."""
    if host.os != "linux":
        return BackendStatus(
            name="native", usable=False, reasons=[f"host is {host.os}: containers need a Linux kernel"]
        )
    reasons = [f"Linux {host.kernel} on {host.platform}: runs linux/{host.architecture} images directly"]
    if host.cgroup == "none":
        reasons.append("no cgroup hierarchy mounted: limits (--memory, --pids-limit) unavailable")
    else:
        reasons.append(f"cgroup layout {host.cgroup}")
    is_root = getattr(os, "geteuid", lambda: -1)() == 0
    if not is_root and not host.user_namespaces:
        return BackendStatus(
            name="native",
            usable=False,
            reasons=[*reasons, "not root and user namespaces are disabled: cannot create containers"],
        )
    return BackendStatus(name="native", usable=True, reasons=reasons)


def lightvm_status(host: HostInfo) -> BackendStatus:
    """The VM backend needs paramiko and a QEMU system emulator for the host arch; libvirt is one
    of its two drivers (QEMU started directly is the other), so it is reported, not required."""
    missing: list[str] = []
    if not _module_present("paramiko"):
        missing.append("paramiko is not installed: pip install paramiko")
    emulator = EMULATORS.get(host.architecture)
    if emulator and shutil.which(emulator) is None:
        package = _EMULATOR_PACKAGE.get(emulator, "qemu")
        missing.append(f"{emulator} not found on PATH: install {package}")
    if missing:
        return BackendStatus(name="lightvm", usable=False, reasons=missing)
    from backends.lightvm.drivers import choose_driver
    from hostrt.errors import UsageError

    try:
        driver, why = choose_driver()
        chosen = f"driver: {driver} ({why})"
    except UsageError as err:
        chosen = f"driver: {err}"
    reasons = [f"{emulator} found", f"accelerator: {host.accelerator.accelerator} ({host.accelerator.reason})", chosen]
    return BackendStatus(name="lightvm", usable=True, reasons=reasons)
