"""Domain XML is a pure function of a machine's settings: check its content and libvirt's schema."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from backends.lightvm.domain import QEMU_NS, BootFiles, SharedDir, render_domain
from backends.lightvm.settings import MachineSettings

BOOT = BootFiles(kernel=Path("/k/vmlinuz"), initrd=Path("/m/initrd.img"), console_log=Path("/m/console.log"),
                 emulator=Path("/usr/bin/qemu-system-x86_64"))


def parse(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def qemu_args(domain: ET.Element) -> list[str]:
    return [arg.get("value", "") for arg in domain.iter(f"{{{QEMU_NS}}}arg")]


def test_amd64_tcg_domain() -> None:
    settings = MachineSettings(name="dev", arch="amd64", cpus=3, memory_mib=768)
    domain = parse(render_domain(settings, BOOT, "qemu", 40222))
    assert domain.get("type") == "qemu"
    assert domain.findtext("name") == "hostrt-dev"
    assert domain.find("memory").text == "768" and domain.find("memory").get("unit") == "MiB"
    assert domain.findtext("vcpu") == "3"
    os_type = domain.find("os/type")
    assert (os_type.get("arch"), os_type.get("machine")) == ("x86_64", "q35")
    assert domain.findtext("os/kernel") == "/k/vmlinuz"
    assert domain.findtext("os/initrd") == "/m/initrd.img"
    assert "console=ttyS0" in domain.findtext("os/cmdline")
    assert domain.find("features/acpi") is not None, "without ACPI poweroff only halts"
    assert {domain.findtext(e) for e in ("on_poweroff", "on_reboot", "on_crash")} == {"destroy"}
    assert domain.find("devices/serial/source").get("path") == "/m/console.log"
    assert domain.find("devices/rng/backend").text == "/dev/urandom", "the guest's sshd needs entropy at boot"
    assert domain.find("cpu") is None


def test_ssh_forward_listens_on_loopback_only() -> None:
    domain = parse(render_domain(MachineSettings(name="dev", arch="amd64"), BOOT, "qemu", 40222))
    netdev = next(arg for arg in qemu_args(domain) if arg.startswith("user,"))
    assert "hostfwd=tcp:127.0.0.1:40222-:22" in netdev
    assert "hostfwd=tcp::" not in netdev and "0.0.0.0" not in netdev


def test_arm64_tcg_uses_virt_and_fast_cpu_model() -> None:
    boot = BootFiles(BOOT.kernel, BOOT.initrd, BOOT.console_log, Path("/usr/bin/qemu-system-aarch64"))
    domain = parse(render_domain(MachineSettings(name="arm", arch="arm64"), boot, "qemu", 40223))
    os_type = domain.find("os/type")
    assert (os_type.get("arch"), os_type.get("machine")) == ("aarch64", "virt")
    assert "console=ttyAMA0" in domain.findtext("os/cmdline")
    assert domain.findtext("cpu/model") == "cortex-a57", "plain `max` boots 3-4x slower under TCG"


def test_accelerated_domain_passes_the_host_cpu_through() -> None:
    domain = parse(render_domain(MachineSettings(name="dev", arch="amd64"), BOOT, "kvm", 40222))
    assert domain.get("type") == "kvm"
    assert domain.find("cpu").get("mode") == "host-passthrough"


def test_shared_directories_become_9p_filesystems() -> None:
    shares = (SharedDir(Path("/home/u/src"), "vol0"), SharedDir(Path("/data"), "vol1", readonly=True))
    domain = parse(render_domain(MachineSettings(name="dev", arch="amd64"), BOOT, "qemu", 40222, shares))
    filesystems = domain.findall("devices/filesystem")
    assert [(fs.find("source").get("dir"), fs.find("target").get("dir")) for fs in filesystems] == [
        ("/home/u/src", "vol0"), ("/data", "vol1")]
    assert [fs.find("readonly") is not None for fs in filesystems] == [False, True]


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None or shutil.which("xmllint") is None,
                    reason="virt-xml-validate/xmllint not installed (ci/setup installs libvirt-clients, libxml2-utils)")
@pytest.mark.parametrize(("arch", "virt_type"), [("amd64", "qemu"), ("amd64", "kvm"), ("arm64", "qemu")])
def test_rendered_domain_validates_against_libvirt_schema(tmp_path: Path, arch: str, virt_type: str) -> None:
    xml = render_domain(MachineSettings(name="dev", arch=arch), BOOT, virt_type, 40222,  # type: ignore[arg-type]
                        (SharedDir(Path("/srv"), "vol0"),))
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    done = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["Dev", "../evil", "a b", "", "x" * 64])
def test_machine_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="invalid machine name"):
        MachineSettings(name=name, arch="amd64")


def test_arm64_has_no_acpi_without_uefi() -> None:
    boot = BootFiles(BOOT.kernel, BOOT.initrd, BOOT.console_log, Path("/usr/bin/qemu-system-aarch64"))
    domain = parse(render_domain(MachineSettings(name="arm", arch="arm64"), boot, "qemu", 40223))
    assert domain.find("features/acpi") is None, "libvirt refuses ACPI on aarch64 without UEFI"


def test_domain_names_differ_between_hostrt_roots(tmp_path: Path) -> None:
    from backends.lightvm.libvirt_conn import domain_prefix

    first, second = domain_prefix(tmp_path / "a" / "machines"), domain_prefix(tmp_path / "b" / "machines")
    assert first != second and first.startswith("hostrt-") and second.startswith("hostrt-")
    assert domain_prefix(tmp_path / "a" / "machines") == first, "stable for one root"
    xml = render_domain(MachineSettings(name="dev", arch="amd64"), BOOT, "qemu", 40222, (), first + "dev")
    assert parse(xml).findtext("name") == first + "dev"
