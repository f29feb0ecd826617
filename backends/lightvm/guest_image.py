"""The guest VM image: a Debian kernel and one uncompressed initramfs, built from images/guest/.

Choices, and why:
- Debian 12 packages only, fetched with `apt-get download` and unpacked with `dpkg-deb -x`
  (`_debs.py`). No maintainer script runs, so the arm64 guest builds on an x86_64 host exactly
  like the amd64 one, without QEMU user emulation or debootstrap's second stage.
- The root filesystem is an initramfs, no disk: direct kernel boot of one file is the fastest
  start under TCG, and an *uncompressed* cpio skips ~4 s of in-guest decompression. It is kept
  small all the same (busybox, dropbear, a trimmed Python, ~28 modules): 33 MB raw, 13 MB gzipped.
  The guest's /init bind-mounts the initramfs root onto itself and chroots into it, so container
  runtimes can pivot_root (impossible from the rootfs mount) without copying anything.
- amd64 boots the uncompressed vmlinux through its PVH entry instead of the bzImage: measured
  here, QEMU (TCG) ran 11-12 s to the kernel's "cannot mount root" panic with the bzImage, most
  of it the kernel decompressing itself, and ~3 s with the PVH vmlinux. Module signatures are stripped (checking
  them costs ~30 ms per module under TCG; a directly booted guest has no Secure Boot to need them).
- Python's stdlib is byte-compiled on the build host (same CPython minor version) and shipped
  without sources: fewer bytes and no compile step on every import in a slow guest.
- The per-machine secrets (the user's public key, the guest's SSH host key, generated and pinned
  by the host) are *not* in the image: `machine_overlay()` makes a tiny second cpio that QEMU
  loads after the image (Linux unpacks concatenated archives in order), so one cached and
  publishable image serves every machine. Dropbear never generates a key (`-R` is not used).
- Outputs are plain files (kernel, initramfs, manifest.json) in a directory named by the recipe
  hash, ready to become OCI artifact blobs; the hash covers every recipe file and the builder's
  own source, never the host, so any machine computes the same cache key for the same hostrt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.lightvm import _debs, _elf, _kmods
from backends.lightvm.cpio import CpioWriter
from hostrt.errors import HostrtError
from hostrt.locks import file_lock

RECIPE_DIR = Path(__file__).resolve().parents[2] / "images" / "guest"
BUILDER_VERSION = "1"
_BUILDER_SOURCES = ("guest_image.py", "cpio.py", "_debs.py", "_kmods.py", "_elf.py")
_REQUIRED_APPLETS = ("sh", "mount", "cp", "grep", "insmod", "ip", "hostname", "switch_root", "init", "poweroff", "sleep")
SHIPPED_KERNEL_NAME = "vmlinuz"   # the kernel as Debian ships it (what a registry artifact carries)
KERNEL_NAME = "kernel"            # what QEMU boots, derived from it by boot_kernel()
INITRAMFS_NAME = "initramfs.cpio"
MANIFEST_NAME = "manifest.json"
HOST_KEY_PATH = "etc/dropbear/dropbear_ed25519_host_key"


class GuestImageError(HostrtError):
    """The guest image cannot be built (unknown arch, missing Debian tools, broken recipe)."""


@dataclass(frozen=True)
class GuestImage:
    arch: str            # OCI arch: "amd64" | "arm64"
    kernel: Path         # what QEMU's -kernel boots: amd64 the PVH vmlinux (or bzImage), arm64 the uncompressed Image
    initramfs: Path      # uncompressed newc cpio
    recipe_hash: str     # sha256 of the recipe inputs; the cache key
    console: str         # "ttyS0" for amd64, "ttyAMA0" for arm64


def load_recipe(recipe_dir: Path = RECIPE_DIR) -> dict[str, Any]:
    with (recipe_dir / "recipe.toml").open("rb") as f:
        return tomllib.load(f)


def recipe_hash(arch: str, recipe_dir: Path = RECIPE_DIR) -> str:
    """sha256 over the arch, every recipe file but docs (path, executable bit, bytes) and the builder's source."""
    h = hashlib.sha256(f"hostrt-guest-image {BUILDER_VERSION} {arch}\n".encode())
    inputs = [
        (f"recipe/{p.relative_to(recipe_dir).as_posix()}", p)
        for p in sorted(recipe_dir.rglob("*")) if p.is_file() and p.suffix != ".md"  # docs are not inputs
    ]
    here = Path(__file__).resolve().parent
    inputs += [(f"builder/{name}", here / name) for name in _BUILDER_SOURCES]
    for name, path in inputs:
        data = path.read_bytes()
        h.update(f"{name} {int(os.access(path, os.X_OK))} {len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()


def _cached(out: Path, arch: str, digest: str, console: str) -> GuestImage | None:
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    image = GuestImage(arch, out / KERNEL_NAME, out / INITRAMFS_NAME, digest, console)
    if manifest.get("recipe_hash") != digest or not image.kernel.is_file() or not image.initramfs.is_file():
        return None
    return image


def build_guest_image(arch: str, cache_dir: Path, recipe_dir: Path = RECIPE_DIR) -> GuestImage:
    """Build (or return the cached build of) the guest image for `arch`; safe to call concurrently."""
    recipe = load_recipe(recipe_dir)
    if arch not in recipe["arch"]:
        raise GuestImageError(f"no guest image recipe for arch {arch!r} (have: {', '.join(recipe['arch'])})")
    console = recipe["arch"][arch]["console"]
    digest = recipe_hash(arch, recipe_dir)
    out = cache_dir / f"guest-{arch}-{digest[:16]}"
    found = _cached(out, arch, digest, console)
    if found:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(cache_dir / f".guest-{arch}.lock"):
        found = _cached(out, arch, digest, console)
        if found:
            return found
        with tempfile.TemporaryDirectory(prefix=f".build-{arch}-", dir=cache_dir) as tmp:
            staging = Path(tmp) / "out"
            staging.mkdir()
            _build(arch, recipe, recipe_dir, digest, cache_dir / "debs" / arch, Path(tmp), staging)
            if out.exists():
                shutil.rmtree(out)
            os.replace(staging, out)
    image = _cached(out, arch, digest, console)
    assert image is not None
    return image


def _build(arch: str, recipe: dict[str, Any], recipe_dir: Path, digest: str, debs_dir: Path, work: Path, out: Path) -> None:
    arch_recipe = recipe["arch"][arch]
    pkgs = recipe["packages"]
    exclude = set(pkgs.get("exclude", []))
    apt = _debs.private_apt(debs_dir.parent, recipe["source"])
    names = _debs.closure(apt, pkgs["install"], exclude, arch)
    kernel_pkg = _debs.kernel_image_package(apt, arch_recipe["kernel_package"], arch)
    debs = _debs.download(apt, names + [kernel_pkg], arch, debs_dir)
    kernel_deb = next(d for d in debs if d.name == kernel_pkg)

    root = work / "root"
    root.mkdir()
    for deb in debs:
        if deb is kernel_deb:
            continue
        unpacked = work / "pkgs" / deb.name
        _debs.unpack(deb.path, unpacked)
        _debs.merge_usr(unpacked, root)
    for top in ("bin", "sbin", "lib", "lib64"):
        if (root / "usr" / top).is_dir():
            (root / top).symlink_to(f"usr/{top}")

    for pattern in recipe["rootfs"]["prune"]:
        for path in sorted(root.glob(pattern), reverse=True):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()

    applets = _link_applets(root)
    kernel = _kmods.read_kernel_deb(kernel_deb.path)
    modules = _kmods.select_modules(kernel, recipe["kernel"]["modules"], recipe["kernel"].get("strip_signatures", False))
    early = _early_modules(modules, recipe["kernel"].get("early", []))
    _install_modules(root, kernel.version, modules, early)
    _install_files(root, recipe_dir / "rootfs", recipe.get("modes", {}))
    for link, target in recipe.get("symlinks", {}).items():
        (root / link).parent.mkdir(parents=True, exist_ok=True)
        (root / link).symlink_to(target)
    bytecode = _compile_python(root, recipe["python"])
    _check_libraries(root, arch_recipe["triplet"])

    (out / SHIPPED_KERNEL_NAME).write_bytes(kernel.image)
    boot = boot_kernel(arch, kernel.image)
    if boot == kernel.image:
        os.link(out / SHIPPED_KERNEL_NAME, out / KERNEL_NAME)  # arm64's plain Image: one copy on disk
    else:
        (out / KERNEL_NAME).write_bytes(boot)
    with (out / INITRAMFS_NAME).open("wb") as f:
        writer = CpioWriter(f)
        writer.add_dir("dev")
        writer.add_chardev("dev/console", 5, 1)  # the kernel opens it for /init's stdio before devtmpfs
        writer.add_chardev("dev/null", 1, 3, 0o666)
        entries = writer.add_tree(root)
        writer.close()
    manifest = {
        "recipe_hash": digest,
        "arch": arch,
        "console": arch_recipe["console"],
        "kernel_version": kernel.version,
        "kernel": KERNEL_NAME,
        "kernel_format": "pvh-elf" if boot[:4] == b"\x7fELF" else "as-shipped",
        "kernel_shipped": SHIPPED_KERNEL_NAME,
        "initramfs": INITRAMFS_NAME,
        "initramfs_bytes": (out / INITRAMFS_NAME).stat().st_size,
        "initramfs_entries": entries + 3,
        "packages": {d.name: d.version for d in debs},
        "modules": modules.load_order,
        "early_modules": early,
        "builtin_modules": modules.builtin,
        "busybox_applets": len(applets),
        "python_bytecode": bytecode,
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def boot_kernel(arch: str, shipped: bytes) -> bytes:
    """The kernel file for QEMU's -kernel, from the one Debian ships; pure Python, any host.

    amd64: the uncompressed vmlinux, booted through its PVH entry (no in-guest decompression,
    several seconds under TCG); the bzImage itself if that is not possible. arm64: the Image,
    gunzipped if shipped compressed.
    """
    if arch == "amd64":
        return _kmods.x86_pvh_vmlinux(shipped) or shipped
    return _kmods.bootable_image(shipped)


def _busybox_applets(binary: bytes) -> list[str]:
    """Applet names from busybox's own name table ("[\\0[[\\0acpid\\0..."), readable for any arch."""
    start = binary.find(b"[\0[[\0")
    if start < 0:
        raise GuestImageError("busybox: applet name table not found")
    names: list[str] = []
    for raw in binary[start:start + 64 * 1024].split(b"\0"):
        name = raw.decode("ascii", errors="replace")
        if not name or (names and name < names[-1]) or not all(c.isalnum() or c in "[-_." for c in name):
            break
        names.append(name)
    return names


def _link_applets(root: Path) -> list[str]:
    busybox = root / "usr" / "bin" / "busybox"
    applets = _busybox_applets(busybox.read_bytes())
    missing = [a for a in _REQUIRED_APPLETS if a not in applets]
    if missing:
        raise GuestImageError(f"busybox lacks applets the guest /init needs: {missing}")
    for name in applets:
        link = root / "usr" / "bin" / name
        if not link.exists() and not link.is_symlink() and not (root / "usr" / "sbin" / name).exists():
            link.symlink_to("busybox")
    (root / "usr" / "sbin").mkdir(exist_ok=True)
    (root / "usr" / "sbin" / "init").symlink_to("../bin/busybox")
    return applets


def _early_modules(modules: _kmods.ModuleSet, names: list[str]) -> list[str]:
    """The paths of `names` and their dependencies, in load order: what /init loads before SSH."""
    wanted = {name.replace("-", "_") for name in names}
    chosen: set[str] = set()
    pending = [path for path in modules.load_order if _kmods._modname(path) in wanted]
    while pending:
        path = pending.pop()
        if path not in chosen:
            chosen.add(path)
            pending.extend(modules.depends.get(path, []))
    return [path for path in modules.load_order if path in chosen]


def _install_modules(root: Path, version: str, modules: _kmods.ModuleSet, early: list[str]) -> None:
    base = root / "usr" / "lib" / "modules" / version
    for rel, data in modules.files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    # modules.dep in depmod's format, so `modprobe` works in the guest for these modules too.
    (base / "modules.dep").write_text("".join(f"{p}: {' '.join(d)}\n".replace(": \n", ":\n") for p, d in modules.depends.items()))
    hostrt = root / "usr" / "lib" / "hostrt"
    hostrt.mkdir(parents=True, exist_ok=True)
    (hostrt / "modules.load").write_text("".join(f"{p}\n" for p in modules.load_order))
    (hostrt / "modules.early").write_text("".join(f"{p}\n" for p in early))


def _install_files(root: Path, source: Path, modes: dict[str, int]) -> None:
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        target = root / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        shutil.copyfile(path, target)
        target.chmod(modes.get(rel, 0o755 if os.access(path, os.X_OK) else 0o644))
    for rel in ("proc", "sys", "run", "tmp", "mnt", "var/log", "etc/dropbear", "root/.ssh"):
        (root / rel).mkdir(parents=True, exist_ok=True)
    (root / "root").chmod(0o700)
    (root / "root" / ".ssh").chmod(0o700)
    (root / "tmp").chmod(0o1777)


_COMPILE_STDLIB = """
import os, py_compile, sys
from pathlib import Path
root, lib = Path(sys.argv[1]), Path(sys.argv[2])
for src in sorted(lib.rglob("*.py")):
    if src.is_symlink():  # e.g. Debian's _sysconfigdata alias: keep it, pointing at the .pyc
        target = os.readlink(src)
        src.unlink()
        src.with_suffix(".pyc").symlink_to(target.removesuffix(".py") + ".pyc" if target.endswith(".py") else target)
        continue
    py_compile.compile(str(src), cfile=str(src.with_suffix(".pyc")), dfile="/" + src.relative_to(root).as_posix(),
                       doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    src.unlink()
"""


def _compile_python(root: Path, settings: dict[str, Any]) -> str:
    """Byte-compile the stdlib and drop the sources, when this interpreter's bytecode fits the guest's."""
    version = settings["version"]
    mode = settings.get("bytecode", "source")
    if mode == "source":
        return "source"
    if f"{sys.version_info.major}.{sys.version_info.minor}" != version:
        return f"source (builder runs Python {sys.version_info.major}.{sys.version_info.minor}, guest has {version})"
    lib = root / "usr" / "lib" / f"python{version}"
    # A fresh interpreter with a fixed hash seed: marshal's output depends on reference counts
    # and set order, so compiling inside this (long-lived) process made rebuilds differ.
    subprocess.run([sys.executable, "-S", "-c", _COMPILE_STDLIB, str(root), str(lib)], check=True,
                   env={"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "")}, capture_output=True)
    return "sourceless"


def _check_libraries(root: Path, triplet: str) -> None:
    """Fail the build if any ELF file needs a shared library the image lacks (an over-eager exclude)."""
    dirs = [root / "usr" / "lib" / triplet, root / "usr" / "lib", root / "usr" / "lib64"]
    problems: list[str] = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.suffix == ".ko":
            continue
        with path.open("rb") as f:
            if not _elf.is_elf(f.read(4)):
                continue
        for lib in _elf.needed(path.read_bytes()):
            if not any(os.path.lexists(d / lib) for d in dirs):
                problems.append(f"/{path.relative_to(root).as_posix()} needs {lib}")
    if problems:
        raise GuestImageError("guest image is missing shared libraries:\n  " + "\n  ".join(problems))


def machine_overlay(authorized_key: str, host_key_dropbear: bytes, hostname: str) -> bytes:
    """A small newc cpio, loaded after the image, with one machine's SSH identity and hostname."""
    buf = io.BytesIO()
    writer = CpioWriter(buf, mtime=int(time.time()))
    writer.add_dir("root", 0o700)
    writer.add_dir("root/.ssh", 0o700)
    writer.add_file("root/.ssh/authorized_keys", (authorized_key.strip() + "\n").encode(), 0o600)
    writer.add_dir("etc", 0o755)
    writer.add_dir("etc/dropbear", 0o755)
    writer.add_file(HOST_KEY_PATH, host_key_dropbear, 0o600)
    writer.add_file("etc/hostname", (hostname.strip() + "\n").encode(), 0o644)
    writer.close()
    return buf.getvalue()


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def dropbear_ed25519_host_key(private_key: Any) -> bytes:
    """Dropbear's ed25519 key file: string "ssh-ed25519", then string (32-byte seed || 32-byte public key).

    `private_key` is a cryptography Ed25519PrivateKey; the host keeps its public half to pin.
    """
    from cryptography.hazmat.primitives import serialization

    seed = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _ssh_string(b"ssh-ed25519") + _ssh_string(seed + public)
