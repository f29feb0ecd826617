"""Fixtures for the guest image: one build per arch per test session, and a real QEMU (TCG) boot.

`HOSTRT_TEST_GUEST_CACHE=DIR` keeps builds (and downloaded .debs) across runs; by default they
live in the session's temporary directory.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from dataclasses import dataclass
from pathlib import Path

import pytest

if TYPE_CHECKING:
    from tests.engine.conftest import Hostrt

from backends.lightvm.guest_image import GuestImage, build_guest_image, dropbear_ed25519_host_key, machine_overlay

def extract_payload(tar: "tarfile.TarFile", dest: Path) -> None:
    """Unpack a payload tar hostrt built: with the data filter where tarfile has it (3.11.4+),
    else after checking that every member stays below DEST (Debian 12's 3.11.2 has no filters)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    for member in tar.getmembers():
        parts = member.name.split("/")
        assert not member.name.startswith("/") and ".." not in parts, f"payload member {member.name!r} leaves its root"
        assert not (member.issym() or member.islnk()) or not member.linkname.startswith("/"), member.name
    tar.extractall(dest)


READY_LINE = b"hostrt-guest: ready"
# What every test that runs machines is marked with (as root: the suite's engine roots are root's).
MACHINE_TESTS = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(getattr(os, "geteuid", lambda: -1)() != 0, reason="the machine tests run hostrt as root"),
]
# Each machine test module runs once per hypervisor driver: libvirt's, and QEMU started by
# hostrt itself (what macOS and Windows use), both for real here.
DRIVERS = [
    pytest.param("libvirt", id="libvirt", marks=pytest.mark.skipif(
        not Path("/run/libvirt/libvirt-sock").exists(), reason="libvirtd is not running (ci/services starts it)")),
    pytest.param("qemu", id="qemu"),
]
QEMU = {
    "amd64": ["qemu-system-x86_64", "-M", "q35", "-accel", "tcg"],
    "arm64": ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-accel", "tcg"],
}


def _foreign_arch_missing(arch: str) -> str | None:
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        return "building the guest image needs Debian's apt-get and dpkg-deb"
    native = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    if arch != native:
        foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout.split()
        if arch not in foreign:
            return f"dpkg has no foreign architecture {arch} (dpkg --add-architecture {arch} && apt-get update)"
    return None


@pytest.fixture(scope="session")
def guest_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("HOSTRT_TEST_GUEST_CACHE")
    return Path(configured) if configured else tmp_path_factory.mktemp("guest-cache")


@pytest.fixture(scope="session")
def apt_arch() -> Callable[[str], None]:
    """Skips the test unless this host's apt can fetch packages for the given arch."""

    def check(arch: str) -> None:
        reason = _foreign_arch_missing(arch)
        if reason:
            pytest.skip(reason)

    return check


@pytest.fixture(scope="session")
def guest_image(guest_cache: Path, apt_arch: Callable[[str], None]) -> Callable[[str], GuestImage]:
    """The guest image for an arch, built (or found in the cache) once per session."""
    built: dict[str, GuestImage] = {}

    def get(arch: str) -> GuestImage:
        apt_arch(arch)
        if arch not in built:
            built[arch] = build_guest_image(arch, guest_cache)
        return built[arch]

    return get


@dataclass
class BootedGuest:
    """A guest under QEMU with an SSH session open as root, the host key pinned."""

    process: subprocess.Popen[bytes]
    client: object  # paramiko.SSHClient
    console: bytearray
    ready_seconds: float
    ssh_seconds: float

    def run(self, command: str, timeout: float = 120) -> tuple[int, str, str]:
        _stdin, stdout, stderr = self.client.exec_command(command, timeout=timeout)  # type: ignore[attr-defined]
        out, err = stdout.read().decode(), stderr.read().decode()
        return stdout.channel.recv_exit_status(), out, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_until(proc: subprocess.Popen[bytes], console: bytearray, deadline: float, wanted: bytes = READY_LINE) -> None:
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while wanted not in console:
        if proc.poll() is not None:
            raise AssertionError(f"QEMU exited ({proc.returncode}) before the guest was ready:\n{console.decode(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"guest not ready in time:\n{console.decode(errors='replace')[-3000:]}")
        chunk = proc.stdout.read(65536)
        if chunk:
            console.extend(chunk)
        else:
            time.sleep(0.05)


@pytest.fixture
def boot_guest(tmp_path: Path) -> Iterator[object]:
    """Boot a built guest the way the machine layer will (kernel + initramfs + overlay), SSH in."""
    paramiko = pytest.importorskip("paramiko")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    started: list[BootedGuest] = []

    def boot(image: GuestImage, timeout: float = 420, overlay: bool = True, wait_for: bytes = READY_LINE) -> BootedGuest:
        """Start QEMU and wait for `wait_for` on the console; SSH in when that is the ready line."""
        qemu = QEMU[image.arch]
        if not shutil.which(qemu[0]):
            pytest.skip(f"{qemu[0]} is not installed (apt-get install qemu-system-x86 qemu-system-arm)")
        user_key, host_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        public = user_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        initrd = tmp_path / "initrd"
        extra = machine_overlay(public, dropbear_ed25519_host_key(host_key), "testguest") if overlay else b""
        initrd.write_bytes(image.initramfs.read_bytes() + extra)
        port = _free_port()
        cmd = qemu + [
            "-m", "512", "-nographic", "-no-reboot",
            "-kernel", str(image.kernel), "-initrd", str(initrd),
            "-append", f"console={image.console} quiet",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-pci,netdev=n0,romfile=",  # no iPXE option ROM: direct kernel boot
            "-device", "virtio-rng-pci",  # seeds the guest's RNG at once: dropbear otherwise waits ~1 s
        ]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        console = bytearray()
        guest = BootedGuest(proc, None, console, 0.0, 0.0)
        started.append(guest)
        _read_until(proc, console, t0 + timeout, wait_for)
        guest.ready_seconds = time.monotonic() - t0
        if wait_for != READY_LINE:
            return guest

        pinned = host_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

        class PinnedHostKey(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
            def missing_host_key(self, client: object, hostname: str, key: object) -> None:
                if key.get_name() != "ssh-ed25519" or key.asbytes()[-32:] != pinned:  # type: ignore[attr-defined]
                    raise paramiko.SSHException("guest host key does not match the pinned key")

        pem = user_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(PinnedHostKey())
        client.connect(
            "127.0.0.1", port=port, username="root", pkey=paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode())),
            allow_agent=False, look_for_keys=False, timeout=60, banner_timeout=60, auth_timeout=60,
        )
        guest.client = client
        guest.ssh_seconds = time.monotonic() - t0
        return guest

    yield boot
    for guest in started:
        if guest.process.poll() is None:
            guest.process.kill()
            guest.process.wait()


def machine_root(tmp_path_factory: pytest.TempPathFactory, guest_cache: Path, name: str,
                 driver: str) -> Iterator["Hostrt"]:
    """A hostrt root for one test module whose machines run under `driver`: the session's guest
    images, busybox built, and every machine it made removed at the end (module fixtures keep
    machines warm between tests)."""
    import json
    import sys

    from tests.engine.conftest import REPO, Hostrt

    root = tmp_path_factory.mktemp(f"{name}-{driver}")
    (root / "cache").mkdir()
    (root / "cache" / "guest").symlink_to(guest_cache)  # guest images built once per session
    hostrt = Hostrt(root, str(Path(sys.executable).with_name("hostrt-runtime")))
    hostrt.env["HOSTRT_MACHINE_DRIVER"] = driver
    hostrt.ok("image", "build", str(REPO / "images" / "busybox"), timeout=600)
    yield hostrt
    for machine in json.loads(hostrt("machine", "ls", "--format", "json").stdout or "[]"):
        hostrt("machine", "rm", machine["name"], timeout=120)


def kill_guest(hostrt: "Hostrt", machine: str = "default") -> None:
    """Kill a running machine's QEMU from outside hostrt, as a crash or an OOM killer would."""
    import json
    import signal
    import subprocess

    facts = json.loads(hostrt.ok("machine", "inspect", machine))
    if facts["driver"] == "libvirt":
        subprocess.run(["virsh", "-c", "qemu:///system", "destroy", facts["domain"]], check=True, capture_output=True)
    else:
        os.kill(int(facts["hypervisor"]["pid"]), signal.SIGKILL)
