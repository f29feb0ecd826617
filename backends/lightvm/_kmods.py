"""The guest kernel: the bootable image and the few modules the guest loads, from Debian's kernel .deb.

The .deb holds ~4000 modules and no modules.dep (depmod runs in its postinst, which we never run),
so dependencies come from each module's own .modinfo `depends=` and `softdep=pre:` entries, read
only for the modules actually reached from the recipe's list. Modules are written uncompressed
(busybox insmod cannot read .ko.xz) with a load order, dependencies first.
"""

from __future__ import annotations

import gzip
import lzma
import struct
import subprocess
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from backends.lightvm import _elf
from backends.lightvm._debs import PackageError


@dataclass
class KernelParts:
    version: str = ""
    image: bytes = b""
    builtin: set[str] = field(default_factory=set)
    modules: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # name -> (path under kernel/, raw)


def _modname(path: str) -> str:
    base = PurePosixPath(path).name
    for suffix in (".xz", ".ko"):
        base = base.removesuffix(suffix)
    return base.replace("-", "_")


def read_kernel_deb(deb: Path) -> KernelParts:
    """Stream the package's data tar once, keeping the kernel image and every module's (small) bytes."""
    parts = KernelParts()
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if not member.isfile():
                continue
            if name.startswith("boot/vmlinuz-"):
                parts.version = name.removeprefix("boot/vmlinuz-")
                parts.image = tar.extractfile(member).read()  # type: ignore[union-attr]
            elif name.startswith("lib/modules/"):
                rel = name.split("/", 3)[3]  # after lib/modules/<version>/
                if rel == "modules.builtin":
                    data = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
                    parts.builtin = {_modname(line) for line in data.split()}
                elif rel.endswith((".ko", ".ko.xz")):
                    parts.modules[_modname(rel)] = (rel, tar.extractfile(member).read())  # type: ignore[union-attr]
    if proc.wait() != 0 or not parts.image:
        raise PackageError(f"{deb.name}: no /boot/vmlinuz-* found")
    return parts


def bootable_image(image: bytes) -> bytes:
    """The kernel as QEMU's -kernel takes it: arm64's Image is gunzipped when shipped gzipped."""
    return gzip.decompress(image) if image[:2] == b"\x1f\x8b" else image


_XEN_ELFNOTE_PHYS32_ENTRY = 18


def x86_pvh_vmlinux(bzimage: bytes) -> bytes | None:
    """The uncompressed vmlinux inside an x86 bzImage, if it has a PVH entry point; else None.

    QEMU boots such an ELF directly in 32-bit mode (PVH), skipping the real-mode setup and, above
    all, the kernel's self-decompression, which under TCG took ~8 of the ~11 s before the kernel's
    first message here. Pure Python (boot protocol header + lzma), so any host can derive it
    from the shipped bzImage.
    """
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        return None
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = bzimage[start:start + length]
    try:
        if payload[:6] == b"\xfd7zXZ\x00":
            vmlinux = lzma.LZMADecompressor().decompress(payload)
        elif payload[:2] == b"\x1f\x8b":
            vmlinux = zlib.decompressobj(wbits=31).decompress(payload)
        else:
            return None  # zstd, lz4, ...: QEMU boots the bzImage as is
    except (lzma.LZMAError, zlib.error):
        return None
    if not _elf.is_elf(vmlinux):
        return None
    has_pvh = any(name == "Xen" and typ == _XEN_ELFNOTE_PHYS32_ENTRY for name, typ, _ in _elf.notes(vmlinux))
    return vmlinux if has_pvh else None


_SIG_MAGIC = b"~Module signature appended~\n"


def strip_signature(module: bytes) -> bytes:
    """The module without its appended signature (struct module_signature: 12 bytes, sig_len last, BE).

    Verifying Debian's signatures costs ~30 ms per module under TCG (measured: 20 modules load in
    ~1.0 s unsigned vs ~1.6 s signed). The guest boots its kernel directly, without Secure Boot or
    lockdown, so unsigned modules load; the kernel only records the "E" taint flag.
    """
    if not module.endswith(_SIG_MAGIC):
        return module
    sig_len, = struct.unpack_from(">I", module, len(module) - len(_SIG_MAGIC) - 4)
    return module[:len(module) - len(_SIG_MAGIC) - 12 - sig_len]


@dataclass(frozen=True)
class ModuleSet:
    files: dict[str, bytes]     # path under lib/modules/<version>/ -> uncompressed .ko
    load_order: list[str]       # the same paths, dependencies first
    builtin: list[str]          # requested names that are built into the kernel
    depends: dict[str, list[str]]  # path -> dependency paths (for modules.dep)


def select_modules(parts: KernelParts, wanted: list[str], strip_signatures: bool = False) -> ModuleSet:
    """The closure of `wanted` over module dependencies, in a valid load order."""
    files: dict[str, bytes] = {}
    deps: dict[str, list[str]] = {}
    order: list[str] = []
    builtin: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, required: bool) -> str | None:
        name = name.replace("-", "_")
        if name in parts.builtin:
            return None
        if name not in parts.modules:
            if required:
                raise PackageError(f"kernel {parts.version} has no module {name!r}")
            return None
        rel, raw = parts.modules[name]
        path = rel.removesuffix(".xz")
        if path in files or name in visiting:
            return path
        visiting.add(name)
        data = lzma.decompress(raw) if rel.endswith(".xz") else raw
        info = _elf.modinfo(data)
        hard = [d for v in info.get("depends", []) for d in v.split(",") if d]
        soft = [  # e.g. "pre: crc32c": load it first when it is a module at all
            d for v in info.get("softdep", []) if v.startswith("pre:")
            for d in v.removeprefix("pre:").split("post:")[0].split()
        ]
        found = [visit(d, True) for d in hard] + [visit(d, False) for d in soft]
        dep_paths = [p for p in found if p]
        files[path] = strip_signature(data) if strip_signatures else data
        deps[path] = dep_paths
        order.append(path)
        return path

    for name in wanted:
        if name.replace("-", "_") in parts.builtin:
            builtin.append(name)
        visit(name, True)
    return ModuleSet(files, order, builtin, deps)
