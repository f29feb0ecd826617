"""The QEMU command line of a machine the QEMU driver starts: a pure function of its inputs,
so every (host OS, host arch, guest arch, accelerator) has a golden test.

The guest is the one the libvirt driver's domain describes (`domain.py`): direct kernel boot,
serial console to a file, user-mode network with SSH forwarded from 127.0.0.1, a virtio RNG,
shares over 9p, and every guest exit ends QEMU (`-no-reboot`, `panic=-1`).

Accelerators (the probe decides whether the host's one works; a guest of another
architecture is always emulated): kvm on Linux, hvf on macOS, whpx on Windows, each with
the host's CPU model where the accelerator passes it through; TCG otherwise, with the
emulated CPU that boots fastest.
"""

from __future__ import annotations

from dataclasses import dataclass

from backends.lightvm.settings import GUEST_ARCH_FACTS, VirtType

NET_ID = "hostrt0"
# -accel values per verdict; WHPX's in-kernel interrupt controller breaks Linux guests on many builds.
_ACCEL = {"kvm": "kvm", "hvf": "hvf", "whpx": "whpx,kernel-irqchip=off", "qemu": "tcg"}
# The guest CPU per (guest arch, accelerator); absent: QEMU's default model.
_CPU = {("amd64", "kvm"): "host", ("amd64", "hvf"): "host", ("arm64", "kvm"): "host", ("arm64", "hvf"): "host",
        ("arm64", "qemu"): "cortex-a57"}  # plain `max` boots several times slower under TCG


@dataclass(frozen=True)
class QemuShare:
    """A host directory exported over 9p under `tag`."""

    source: str
    tag: str
    readonly: bool = False


# QEMU's seccomp filter, as libvirt sets it: no exec, no setuid, no resource-limit or scheduler
# changes, no obsolete syscalls. Linux only (QEMU has no sandbox elsewhere).
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


@dataclass(frozen=True)
class QemuLaunch:
    """Everything the command line depends on; paths as the host OS spells them."""

    host_os: str
    emulator: str
    name: str  # shown by `ps` as guest=NAME, as libvirt names its QEMUs
    guest_arch: str
    virt_type: VirtType
    memory_mib: int
    cpus: int
    kernel: str
    initrd: str
    console_log: str
    ssh_port: int
    qmp: str  # unix:PATH (relative to the machine directory) or, on Windows, pipe:NAME
    shares: tuple[QemuShare, ...] = ()


def option_value(text: str) -> str:
    """`text` inside a QEMU `key=value,...` option: a comma is doubled, so a path cannot add options."""
    return text.replace(",", ",,")


# The hardware accelerator QEMU offers per (host OS, host arch): WHPX runs x86 guests only.
HOST_ACCELERATORS: dict[tuple[str, str], VirtType] = {
    ("linux", "amd64"): "kvm", ("linux", "arm64"): "kvm", ("darwin", "amd64"): "hvf", ("darwin", "arm64"): "hvf",
    ("windows", "amd64"): "whpx"}


def accelerator_for(host_os: str, host_arch: str, guest_arch: str, verdict: str) -> VirtType:
    """The accelerator a guest runs under: the host's, when the probe proved it, for a guest of
    the host's architecture; TCG (`qemu`, as libvirt calls it) for anything else."""
    expected = HOST_ACCELERATORS.get((host_os, host_arch))
    if guest_arch != host_arch or expected is None or verdict != expected:
        return "qemu"
    return expected


def qemu_argv(launch: QemuLaunch) -> list[str]:
    """The whole command line, without how the process is detached (the driver adds that)."""
    facts = GUEST_ARCH_FACTS[launch.guest_arch]
    argv = [launch.emulator, "-name", f"guest={option_value(launch.name)},debug-threads=on", "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-M", facts["machine"], "-accel", _ACCEL[launch.virt_type]]
    cpu = _CPU.get((launch.guest_arch, launch.virt_type))
    if cpu:
        argv += ["-cpu", cpu]
    argv += ["-m", str(launch.memory_mib), "-smp", str(launch.cpus),
             "-kernel", launch.kernel, "-initrd", launch.initrd,
             "-append", f"console={facts['console']} quiet panic=-1",
             "-chardev", f"file,id=console,path={option_value(launch.console_log)}", "-serial", "chardev:console",
             "-chardev", _qmp_chardev(launch.qmp), "-mon", "chardev=qmp,mode=control",
             "-netdev", f"user,id={NET_ID},hostfwd=tcp:127.0.0.1:{launch.ssh_port}-:22",
             "-device", f"virtio-net-pci,netdev={NET_ID},romfile=",  # no option ROM: nothing boots from it
             "-device", "virtio-rng-pci"]  # without it the guest's SSH server waits for entropy at boot
    # QEMU's Windows builds have no 9p `local` backend: a Windows machine shares nothing (yet).
    for index, share in enumerate(launch.shares if launch.host_os != "windows" else ()):
        readonly = ",readonly=on" if share.readonly else ""
        argv += ["-fsdev", f"local,id=fs{index},path={option_value(share.source)},security_model=passthrough{readonly}",
                 "-device", f"virtio-9p-pci,fsdev=fs{index},mount_tag={option_value(share.tag)}"]
    if launch.host_os == "linux":
        argv += ["-sandbox", SANDBOX]
    return argv


def _qmp_chardev(qmp: str) -> str:
    """QMP on a unix socket (private in the machine directory), or on Windows a named pipe, which
    only its creator can write: never on TCP, where any local user could drive the VM."""
    kind, _, where = qmp.partition(":")
    if kind == "unix":
        return f"socket,id=qmp,path={option_value(where)},server=on,wait=off"
    if kind == "pipe":
        return f"pipe,id=qmp,path={option_value(where)}"
    raise ValueError(f"QMP address {qmp!r}: use unix:PATH or pipe:NAME")
