"""Run the real `hostrt` entry point in a subprocess that behaves like a macOS or Windows Python.

The profile is applied by `simhost/sitecustomize.py` (first on PYTHONPATH; its docstring says
what is faked, what is removed and where the simulation ends). This module builds the
environment of such a run: a private HOME, a PATH of only the tools that host would have (a
fake QEMU among them), and on macOS a TMPDIR that resolves elsewhere, as /var/folders does
to /private/var/folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SIMHOST_DIR = Path(__file__).resolve().parent / "simhost"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Profile:
    """A simulated host: what `HOSTRT_SIMULATED_HOST` names and what hostrt should see."""

    name: str  # sys.platform/platform.machine()
    host_os: str  # hostrt's name for the OS
    arch: str  # OCI architecture
    accelerator: str  # the hardware accelerator QEMU has there

    @property
    def windows(self) -> bool:
        return self.name.startswith("win32/")

    @property
    def emulator(self) -> str:
        return {"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}[self.arch]

    @property
    def id(self) -> str:
        return self.name.replace("/", "-")


PROFILES = (
    Profile("darwin/arm64", "darwin", "arm64", "hvf"),
    Profile("darwin/x86_64", "darwin", "amd64", "hvf"),
    Profile("win32/AMD64", "windows", "amd64", "whpx"),
)

# Tools a workstation has besides QEMU: a shell for the fake QEMU, nothing of Linux's
# (apt-get, dpkg-deb, libvirtd, iptables... would change what hostrt decides).
_HOST_TOOLS = ("sh", "env", "cat", "printf")

FAKE_QEMU = """#!/bin/sh
# A stand-in for {name}: records its command line (NUL-separated) and behaves as a QEMU that
# cannot run a guest here. Asked for its version it answers; started as the accelerator probe
# (serial on stdio) it prints the probe's proof when FAKE_QEMU_ACCEL_WORKS=1.
if [ "$1" = "--version" ]; then echo "QEMU emulator version 8.2.2"; exit 0; fi
printf '%s\\0' "$0" "$@" >> "$FAKE_QEMU_RECORD"
printf '\\n' >> "$FAKE_QEMU_RECORD"
for arg in "$@"; do
  if [ "$arg" = "stdio" ] && [ "$FAKE_QEMU_ACCEL_WORKS" = "1" ]; then
    echo "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"; exit 0
  fi
done
echo "{name}: fake QEMU: no guest can run on this test host" >&2
exit 1
"""


@dataclass
class SimulatedHost:
    """One profile's environment under a test's temporary directory."""

    profile: Profile
    base: Path
    env: dict[str, str]

    @property
    def qemu_record(self) -> Path:
        return Path(self.env["FAKE_QEMU_RECORD"])

    def qemu_calls(self) -> list[list[str]]:
        """Every command line the fake QEMU was started with, in order."""
        if not self.qemu_record.exists():
            return []
        calls = self.qemu_record.read_bytes().split(b"\0\n")
        return [[arg.decode() for arg in call.split(b"\0")] for call in calls if call]

    def run(self, *args: str, timeout: float = 120, input: str | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """`hostrt ARGS` through the console script of this venv, as the user would type it."""
        return subprocess.run([hostrt_script(), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, input=input, cwd=cwd or self.base)

    def python(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=REPO_ROOT)


def hostrt_script() -> str:
    script = Path(sys.executable).parent / "hostrt"
    return str(script) if script.exists() else shutil.which("hostrt") or "hostrt"


def simulated_host(profile: Profile, base: Path, hostrt_root: Path | None = None,
                   accel_works: bool = False) -> SimulatedHost:
    """The environment of a `profile` run: PYTHONPATH starts with the bootstrap, PATH holds a
    fake QEMU for the host's architecture (and the other one) and a few shell tools."""
    base.mkdir(parents=True, exist_ok=True)
    bin_dir = base / "bin"
    bin_dir.mkdir(exist_ok=True)
    suffix = ".EXE" if profile.windows else ""  # found through PATHEXT, as on Windows
    for name in ("qemu-system-x86_64", "qemu-system-aarch64"):
        fake = bin_dir / f"{name}{suffix}"
        fake.write_text(FAKE_QEMU.format(name=name))
        fake.chmod(0o755)
    for tool in _HOST_TOOLS:
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    home = base / "home"
    home.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HOSTRT_", "XDG_", "PYTEST_")) and key not in ("PYTHONPATH", "TMPDIR", "PATHEXT")}
    env.update({
        "PYTHONPATH": os.pathsep.join([str(SIMHOST_DIR), str(REPO_ROOT)]),
        "HOSTRT_SIMULATED_HOST": profile.name,
        "PATH": str(bin_dir),
        "HOME": str(home),
        "HOSTRT_ROOT": str(hostrt_root or base / "hostrt"),
        "FAKE_QEMU_RECORD": str(base / "qemu-argv"),
        "FAKE_QEMU_ACCEL_WORKS": "1" if accel_works else "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    if profile.windows:
        temp = home / "AppData" / "Local" / "Temp"  # the user's own, as %TEMP% is there
        temp.mkdir(parents=True, exist_ok=True)
        env.update({"PATHEXT": ".EXE", "USERPROFILE": str(home), "USERNAME": "me", "TEMP": str(temp),
                    "TMP": str(temp), "TMPDIR": str(temp)})  # TMPDIR: what this Python's tempfile reads
    else:
        # macOS: $TMPDIR (/var/folders/...) and /tmp are symlinks into /private.
        private = base / "private" / "tmp"
        private.mkdir(parents=True, exist_ok=True)
        link = base / "tmp"
        if not link.is_symlink():
            link.symlink_to(private)
        env["TMPDIR"] = f"{link}/"
    return SimulatedHost(profile, base, env)


# -- what the local registry serves to the simulated hosts ----------------------------------
APP_IMAGE = "tiny"  # linux/amd64 + linux/arm64, one file each
GUEST_IMAGE = "hostrt/guest"  # a guest artifact in hostrt's format whose kernel only a fake QEMU "boots"


def publish_test_images(registry_host: str, workdir: Path) -> dict[str, str]:
    """Push the app image and a small guest artifact (both architectures) to the registry with
    this host's hostrt; returns their references."""
    from backends.lightvm.guest_image import GuestImage
    from backends.lightvm.guest_oci import store_guest_images
    from hostrt.images import oci
    from hostrt.images.assemble import store_index, store_manifest
    from hostrt.images.layer_tar import TarEntry, write_layer
    from hostrt.images.local import LocalImages
    from hostrt.paths import Paths

    root = workdir / "publisher"
    images = LocalImages.open(Paths(root=root, run=root / "run"))
    manifests = []
    guests = []
    for arch, console in (("amd64", "ttyS0"), ("arm64", "ttyAMA0")):
        entries = [TarEntry(path="hello.txt", data=f"hello from linux/{arch}\n".encode())]
        layer, size, diff_id = write_layer(images.store, entries, 0, workdir / f"scratch-{arch}")
        config = oci.ImageConfig(architecture=arch, os="linux", config={"Cmd": ["cat", "/hello.txt"]},
                                 rootfs=oci.RootFS(type="layers", diff_ids=[diff_id]))
        manifests.append(store_manifest(images.store, config, [(layer, size)]))
        built = workdir / f"guest-{arch}"
        built.mkdir(parents=True, exist_ok=True)
        (built / "vmlinuz").write_bytes(b"not a kernel: only a fake QEMU boots this " + arch.encode())
        (built / "initramfs.cpio").write_bytes(b"070701" + b"0" * 104 + b"TRAILER!!!\0\0")
        (built / "manifest.json").write_text('{"fake": true}\n')
        guests.append(GuestImage(arch=arch, kernel=built / "vmlinuz", initramfs=built / "initramfs.cpio",
                                 recipe_hash=f"fake-{arch}", console=console))
    store_index(images.store, f"{APP_IMAGE}:latest", manifests)
    store_guest_images(images, f"{GUEST_IMAGE}:test", guests)
    from hostrt.images.push import push

    refs = {"app": f"{registry_host}/{APP_IMAGE}:latest", "guest": f"{registry_host}/{GUEST_IMAGE}:test"}
    for local, remote in ((f"{APP_IMAGE}:latest", refs["app"]), (f"{GUEST_IMAGE}:test", refs["guest"])):
        push(images, local, remote)
    return refs
