"""The QEMU driver's command line, golden for every (host OS, host arch, guest arch, verdict):
a change to what macOS and Windows users' QEMU is told shows up here as a diff.

`HOSTRT_UPDATE_GOLDEN=1 pytest tests/lightvm/test_qemu_command.py` rewrites the golden file.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

from backends.lightvm.drivers.qemu_command import HOST_ACCELERATORS, QemuLaunch, QemuShare, accelerator_for, qemu_argv
from backends.lightvm.settings import GUEST_ARCH_FACTS

pytestmark = pytest.mark.portable

GOLDEN = Path(__file__).with_name("golden") / "qemu_argv.json"
HOSTS = [("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64"), ("windows", "amd64")]


def _launch(host_os: str, guest_arch: str, virt_type: str) -> QemuLaunch:
    """The launch the driver builds on that host: its path spelling and its QMP transport."""
    if host_os == "windows":
        base, qmp = "C:\\Users\\me\\AppData\\Local\\hostrt\\machines\\default\\", "pipe:hostrt-machines-default-1"
        shares = (QemuShare("C:\\Users\\me", "share0"),)
    else:
        base, qmp = "/home/me/.local/share/hostrt/machines/default/", "unix:qmp.sock"
        shares = (QemuShare("/home/me", "share0"), QemuShare("/private/tmp", "share1", readonly=True))
    return QemuLaunch(host_os=host_os, emulator=GUEST_ARCH_FACTS[guest_arch]["emulator"], name="hostrt-0a1b2c3d-default",
                      guest_arch=guest_arch, virt_type=virt_type, memory_mib=1024, cpus=2,  # type: ignore[arg-type]
                      kernel=base + "vmlinuz", initrd=base + "initrd.img", console_log=base + "console.log",
                      ssh_port=40022, qmp=qmp, shares=shares)


def _cases() -> dict[str, list[str]]:
    cases = {}
    for (host_os, host_arch), guest_arch, proven in itertools.product(HOSTS, ("amd64", "arm64"), (True, False)):
        verdict = HOST_ACCELERATORS[(host_os, host_arch)] if proven else "tcg"
        virt_type = accelerator_for(host_os, host_arch, guest_arch, verdict)
        name = f"{host_os}-{host_arch} guest-{guest_arch} verdict-{verdict}"
        cases[name] = qemu_argv(_launch(host_os, guest_arch, virt_type))
    return cases


def test_command_lines_match_the_golden_file() -> None:
    cases = _cases()
    if os.environ.get("HOSTRT_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(cases, indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert sorted(golden) == sorted(cases)
    for name, argv in cases.items():
        assert argv == golden[name], f"{name}: the command line changed (HOSTRT_UPDATE_GOLDEN=1 to accept)"


@pytest.mark.parametrize(("host", "guest_arch", "verdict", "expected"), [
    (("linux", "amd64"), "amd64", "kvm", ["-accel", "kvm", "-cpu", "host"]),
    (("linux", "amd64"), "arm64", "kvm", ["-accel", "tcg", "-cpu", "cortex-a57"]),  # another arch: always emulated
    (("linux", "amd64"), "amd64", "tcg", ["-accel", "tcg", "-m"]),
    (("darwin", "arm64"), "arm64", "hvf", ["-M", "virt", "-accel", "hvf", "-cpu", "host"]),
    (("darwin", "amd64"), "amd64", "hvf", ["-M", "q35", "-accel", "hvf", "-cpu", "host"]),
    (("darwin", "arm64"), "amd64", "hvf", ["-M", "q35", "-accel", "tcg", "-m"]),
    (("windows", "amd64"), "amd64", "whpx", ["-accel", "whpx,kernel-irqchip=off", "-m"]),
    (("windows", "amd64"), "amd64", "tcg", ["-accel", "tcg", "-m"]),
])
def test_accelerator_per_host(host: tuple[str, str], guest_arch: str, verdict: str, expected: list[str]) -> None:
    argv = qemu_argv(_launch(host[0], guest_arch, accelerator_for(*host, guest_arch, verdict)))
    at = argv.index(expected[0])
    assert argv[at:at + len(expected)] == expected


def test_a_path_cannot_add_options_to_a_device() -> None:
    """QEMU splits `key=value` options at commas: a share or log path with a comma must stay one
    value, or a directory named `x,security_model=none` would change how the guest writes the host."""
    launch = _launch("linux", "amd64", "qemu")
    hostile = QemuLaunch(**{**launch.__dict__, "console_log": "/m/a,b/console.log",
                            "shares": (QemuShare("/home/x,readonly=off,security_model=none", "share0"),)})
    argv = qemu_argv(hostile)
    fsdev = argv[argv.index("-fsdev") + 1]
    assert fsdev == "local,id=fs0,path=/home/x,,readonly=off,,security_model=none,security_model=passthrough"
    assert "file,id=console,path=/m/a,,b/console.log" in argv


def test_qmp_is_a_private_socket_or_pipe_never_tcp() -> None:
    argv = qemu_argv(_launch("linux", "amd64", "qemu"))
    assert "socket,id=qmp,path=qmp.sock,server=on,wait=off" in argv
    with pytest.raises(ValueError, match="QMP address"):
        qemu_argv(QemuLaunch(**{**_launch("linux", "amd64", "qemu").__dict__, "qmp": "tcp:127.0.0.1:4444"}))


def test_a_missing_emulator_is_never_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`brew install qemu` after a first try must be seen at once: the "no emulator" verdict is
    answered but not kept, while a verdict a probe measured is kept."""
    from backends.lightvm.probe import resolve_virt_type
    from hostrt.accelerator import CACHE_NAME, CachedVerdict, write_verdict
    from hostrt.platform import AcceleratorVerdict

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    kernel = tmp_path / "vmlinuz"
    assert resolve_virt_type("darwin", "arm64", "arm64", kernel, tmp_path, "23.1.0") == "qemu"
    assert not (tmp_path / CACHE_NAME).exists()
    proven = AcceleratorVerdict(accelerator="hvf", candidate="hvf", reason="a guest kernel booted under hvf in 1.0 s")
    write_verdict(tmp_path, CachedVerdict(host_os="darwin", kernel="23.1.0", architecture="arm64", verdict=proven))
    assert resolve_virt_type("darwin", "arm64", "arm64", kernel, tmp_path, "23.1.0") == "hvf"
    assert resolve_virt_type("darwin", "arm64", "amd64", kernel, tmp_path, "23.1.0") == "qemu"
