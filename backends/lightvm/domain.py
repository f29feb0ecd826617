"""Render a machine's libvirt domain XML: a pure function of its settings and files.

Direct kernel boot with an uncompressed initramfs (decompression costs seconds under TCG),
ACPI on (without it `poweroff` only halts), every exit of the guest destroys the transient
domain so a stopped machine holds no memory. Networking is QEMU user mode with one forward
for SSH on 127.0.0.1, added through `<qemu:commandline>` (libvirt's passt is not available
everywhere, and a bridge would need host network changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

from backends.lightvm.settings import GUEST_ARCH_FACTS, MachineSettings, VirtType

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
NET_ID = "hostrt0"


@dataclass(frozen=True)
class BootFiles:
    """What the guest boots from and where its console goes."""

    kernel: Path
    initrd: Path
    console_log: Path
    emulator: Path


@dataclass(frozen=True)
class SharedDir:
    """A host directory exported to the guest over 9p under a mount tag."""

    source: Path
    tag: str
    readonly: bool = False


def _cpu(arch: str, virt_type: VirtType) -> ET.Element | None:
    """The guest CPU, or None for QEMU's default model (amd64 under TCG)."""
    if virt_type != "qemu":
        return ET.Element("cpu", mode="host-passthrough")
    if arch == "arm64":
        # Plain `max` boots 3-4x slower under TCG; cortex-a57 is the fast emulated choice.
        cpu = ET.Element("cpu", mode="custom", match="exact")
        ET.SubElement(cpu, "model", fallback="forbid").text = "cortex-a57"
        return cpu
    return None


def render_domain(
    settings: MachineSettings,
    boot: BootFiles,
    virt_type: VirtType,
    ssh_port: int,
    shared: tuple[SharedDir, ...] = (),
    domain_name: str | None = None,
) -> str:
    """The domain XML for `settings`, booting `boot`, with SSH forwarded from 127.0.0.1:`ssh_port`."""
    ET.register_namespace("qemu", QEMU_NS)
    facts = GUEST_ARCH_FACTS[settings.arch]
    domain = ET.Element("domain", type=virt_type)
    ET.SubElement(domain, "name").text = domain_name or settings.domain_name
    ET.SubElement(domain, "memory", unit="MiB").text = str(settings.memory_mib)
    ET.SubElement(domain, "vcpu").text = str(settings.cpus)

    os_el = ET.SubElement(domain, "os")
    ET.SubElement(os_el, "type", arch=facts["libvirt_arch"], machine=facts["machine"]).text = "hvm"
    ET.SubElement(os_el, "kernel").text = str(boot.kernel)
    ET.SubElement(os_el, "initrd").text = str(boot.initrd)
    ET.SubElement(os_el, "cmdline").text = f"console={facts['console']} quiet panic=-1"

    features = ET.SubElement(domain, "features")
    if settings.arch == "amd64":
        ET.SubElement(features, "acpi")  # without it poweroff only halts; arm64 powers off through PSCI
    else:  # libvirt allows ACPI on aarch64 only with UEFI firmware, which direct kernel boot skips
        ET.SubElement(features, "gic", version="3" if virt_type != "qemu" else "2")
    cpu = _cpu(settings.arch, virt_type)
    if cpu is not None:
        domain.append(cpu)

    for event in ("on_poweroff", "on_reboot", "on_crash"):
        ET.SubElement(domain, event).text = "destroy"

    devices = ET.SubElement(domain, "devices")
    ET.SubElement(devices, "emulator").text = str(boot.emulator)
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(boot.console_log))
    ET.SubElement(serial, "target", port="0")
    ET.SubElement(devices, "memballoon", model="none")
    # Without a hardware RNG the guest's SSH server waits ~1 s for entropy at boot.
    rng = ET.SubElement(devices, "rng", model="virtio")
    ET.SubElement(rng, "backend", model="random").text = "/dev/urandom"
    for share in shared:
        fs = ET.SubElement(devices, "filesystem", type="mount", accessmode="passthrough")
        ET.SubElement(fs, "source", dir=str(share.source))
        ET.SubElement(fs, "target", dir=share.tag)
        if share.readonly:
            ET.SubElement(fs, "readonly")

    qemu_args = ET.SubElement(domain, f"{{{QEMU_NS}}}commandline")
    for value in (
        "-netdev",
        f"user,id={NET_ID},hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device",
        # An explicit slot: libvirt assigns its own devices from slot 1 up and does not see ours.
        f"virtio-net-pci,netdev={NET_ID},bus=pcie.0,addr=0x10,romfile=",  # no option ROM: nothing boots from it
    ):
        ET.SubElement(qemu_args, f"{{{QEMU_NS}}}arg", value=value)
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode")
