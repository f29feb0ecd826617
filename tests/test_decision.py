"""The backend decision over a table of host x image cases (host facts are made up: the logic is tested)."""

from __future__ import annotations

import pytest

from hostrt.errors import BackendUnavailableError, UnsupportedPlatformError, UsageError
from hostrt.platform import AcceleratorVerdict, HostInfo, ImagePlatform, decide

pytestmark = pytest.mark.portable

KVM_PROVEN = AcceleratorVerdict(accelerator="kvm", candidate="kvm", reason="a guest booted under kvm")
KVM_UNPROBED = AcceleratorVerdict(accelerator="unprobed", candidate="kvm", reason="not probed yet")
HVF_PROVEN = AcceleratorVerdict(accelerator="hvf", candidate="hvf", reason="a guest booted under hvf")
WHPX_PROVEN = AcceleratorVerdict(accelerator="whpx", candidate="whpx", reason="a guest booted under whpx")


def host(os: str, arch: str, accel: AcceleratorVerdict, variant: str | None = None) -> HostInfo:
    return HostInfo(os=os, kernel="test", architecture=arch, variant=variant, cgroup="v2", accelerator=accel)


LINUX_AMD64 = host("linux", "amd64", KVM_PROVEN)
LINUX_AMD64_UNPROBED = host("linux", "amd64", KVM_UNPROBED)
LINUX_ARM64 = host("linux", "arm64", KVM_PROVEN)
LINUX_ARMV7 = host("linux", "arm", KVM_UNPROBED, variant="v7")
DARWIN_ARM64 = host("darwin", "arm64", HVF_PROVEN)
WINDOWS_AMD64 = host("windows", "amd64", WHPX_PROVEN)


@pytest.mark.parametrize(
    ("host_info", "image", "backend", "emulator", "accelerator"),
    [
        (LINUX_AMD64, "linux/amd64", "native", None, None),
        (LINUX_AMD64, "linux/arm64", "lightvm", "qemu-system-aarch64", "tcg"),
        (LINUX_AMD64, "linux/arm/v7", "lightvm", "qemu-system-arm", "tcg"),
        (LINUX_AMD64_UNPROBED, "linux/arm64", "lightvm", "qemu-system-aarch64", "tcg"),
        (LINUX_ARM64, "linux/arm64", "native", None, None),
        (LINUX_ARM64, "linux/amd64", "lightvm", "qemu-system-x86_64", "tcg"),
        (LINUX_ARMV7, "linux/arm/v6", "native", None, None),
        (LINUX_ARMV7, "linux/arm/v8", "lightvm", "qemu-system-arm", "tcg"),
        (DARWIN_ARM64, "linux/arm64", "lightvm", "qemu-system-aarch64", "hvf"),
        (DARWIN_ARM64, "linux/amd64", "lightvm", "qemu-system-x86_64", "tcg"),
        (WINDOWS_AMD64, "linux/amd64", "lightvm", "qemu-system-x86_64", "whpx"),
        (WINDOWS_AMD64, "linux/arm64", "lightvm", "qemu-system-aarch64", "tcg"),
    ],
)
def test_decision_table(host_info: HostInfo, image: str, backend: str, emulator: str | None, accelerator: str | None) -> None:
    decision = decide(host_info, ImagePlatform.parse(image))
    assert (decision.backend, decision.emulator, decision.accelerator) == (backend, emulator, accelerator)
    assert decision.reasons, "every decision explains itself"
    assert str(host_info.platform) in decision.reasons[0]
    assert ImagePlatform.parse(image).architecture in decision.reasons[0]


def test_cross_architecture_reason_warns_about_emulation() -> None:
    decision = decide(DARWIN_ARM64, ImagePlatform.parse("linux/amd64"))
    assert decision.reasons[0] == "host is darwin/arm64, image is linux/amd64: a Linux VM is needed"
    assert decision.reasons[1] == "amd64 on arm64 needs TCG emulation, expect it to be slow"


def test_unprobed_accelerator_falls_back_to_tcg_and_says_why() -> None:
    decision = decide(LINUX_AMD64_UNPROBED, ImagePlatform.parse("linux/amd64"), override="lightvm")
    assert decision.accelerator == "tcg"
    assert "not probed yet" in decision.reasons[1]
    assert "--backend lightvm" in decision.reasons[0]


def test_proven_kvm_is_used_for_same_architecture_vm() -> None:
    decision = decide(LINUX_AMD64, ImagePlatform.parse("linux/amd64"), override="lightvm")
    assert (decision.backend, decision.accelerator) == ("lightvm", "kvm")


@pytest.mark.parametrize("host_info", [LINUX_AMD64, DARWIN_ARM64, WINDOWS_AMD64])
def test_windows_image_has_no_backend(host_info: HostInfo) -> None:
    with pytest.raises(UnsupportedPlatformError, match="windows/amd64"):
        decide(host_info, ImagePlatform.parse("windows/amd64"))


def test_unknown_architecture_has_no_emulator() -> None:
    with pytest.raises(UnsupportedPlatformError, match="no QEMU system emulator is known for mips64"):
        decide(LINUX_AMD64, ImagePlatform.parse("linux/mips64"))


@pytest.mark.parametrize(
    ("host_info", "image", "why"),
    [
        (LINUX_AMD64, "linux/arm64", "the host CPU cannot execute its binaries"),
        (DARWIN_ARM64, "linux/arm64", "the host is not Linux"),
    ],
)
def test_native_override_refused_when_impossible(host_info: HostInfo, image: str, why: str) -> None:
    with pytest.raises(BackendUnavailableError, match=why):
        decide(host_info, ImagePlatform.parse(image), override="native")


def test_unknown_override_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown backend 'hyperv'"):
        decide(LINUX_AMD64, ImagePlatform.parse("linux/amd64"), override="hyperv")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", ("linux", "amd64", None)),
        ("linux/x86_64", ("linux", "amd64", None)),
        ("linux/aarch64", ("linux", "arm64", None)),
        ("linux/arm64/v8", ("linux", "arm64", None)),
        ("linux/armv7l", ("linux", "arm", "v7")),
        ("linux/arm/v6", ("linux", "arm", "v6")),
        ("Linux/AMD64", ("linux", "amd64", None)),
    ],
)
def test_platform_parsing_normalises(text: str, expected: tuple[str, str, str | None]) -> None:
    parsed = ImagePlatform.parse(text)
    assert (parsed.os, parsed.architecture, parsed.variant) == expected


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "linux/arm/v7/extra", ""])
def test_platform_parsing_rejects_malformed(text: str) -> None:
    with pytest.raises(UsageError, match="invalid platform"):
        ImagePlatform.parse(text)
