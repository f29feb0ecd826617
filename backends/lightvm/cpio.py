"""A writer for the "newc" cpio format, the only archive format the Linux initramfs unpacker reads.

Written in Python rather than calling `cpio`/`bsdcpio` so that the guest image and the per-machine
overlay can be produced on any host (macOS and Windows have no GNU cpio) and without root: device
nodes such as /dev/console and file ownership (always root here) are just header fields.
Output is deterministic: fixed mtime, inode numbers in write order, entries in the caller's order.

Format (see the kernel's Documentation/driver-api/early-userspace/buffer-format.rst): each entry is
a 110-byte ASCII header "070701" + 13 eight-digit hex fields, the NUL-terminated name padded to a
4-byte boundary, then the data padded to a 4-byte boundary; the archive ends with "TRAILER!!!".
Concatenated archives are unpacked one after the other, later entries replacing earlier ones.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
HEADER_LEN = 110


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


class CpioWriter:
    """Appends newc entries to a binary stream; call `close()` to write the trailer."""

    def __init__(self, out: BinaryIO, mtime: int = 0) -> None:
        self._out = out
        self._mtime = mtime
        self._ino = 0
        self._closed = False

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), nlink: int = 1) -> None:
        if self._closed:
            raise ValueError("cpio archive already closed")
        name = name.lstrip("/") or "."
        encoded = name.encode() + b"\0"
        self._ino += 1
        fields = (
            self._ino, mode, 0, 0, nlink, self._mtime, len(data),
            0, 0, rdev[0], rdev[1], len(encoded), 0,
        )
        header = MAGIC + b"".join(b"%08X" % f for f in fields)
        self._out.write(header + encoded + _pad4(HEADER_LEN + len(encoded)))
        self._out.write(data + _pad4(len(data)))

    def add_dir(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm, nlink=2)

    def add_file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def add_symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def add_chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def add_tree(self, root: Path, prefix: str = "") -> int:
        """Add everything under `root` (sorted, parents first), owned by root; returns the entry count.

        Hard links are stored as independent copies: the initramfs is small and this keeps the
        writer free of the newc hard-link rules.
        """
        count = 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            base = Path(dirpath)
            rel_dir = base.relative_to(root).as_posix()
            if rel_dir != ".":
                self.add_dir(f"{prefix}{rel_dir}", stat.S_IMODE(base.lstat().st_mode))
                count += 1
            # os.walk lists symlinks to directories among dirnames: store them as links, don't descend.
            for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
                path = base / name
                rel = path.relative_to(root).as_posix()
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    self.add_symlink(f"{prefix}{rel}", os.readlink(path))
                elif stat.S_ISREG(st.st_mode):
                    self.add_file(f"{prefix}{rel}", path.read_bytes(), stat.S_IMODE(st.st_mode))
                else:
                    raise ValueError(f"unsupported file type in initramfs tree: {path}")
                count += 1
            dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
        return count

    def close(self) -> None:
        if not self._closed:
            self._entry(TRAILER, 0, nlink=1)
            self._closed = True


def read_entries(data: bytes) -> list[tuple[str, int, bytes]]:
    """Parse a newc archive (or several concatenated) into (name, mode, data); used by tests and checks."""
    entries: list[tuple[str, int, bytes]] = []
    pos = 0
    while pos < len(data):
        if data[pos:pos + 4] == b"\0\0\0\0":  # padding between concatenated archives
            pos += 4
            continue
        if data[pos:pos + 6] != MAGIC:
            raise ValueError(f"bad cpio magic at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        name_start = pos + HEADER_LEN
        name = data[name_start:name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(HEADER_LEN + namesize) % 4)
        body = data[data_start:data_start + filesize]
        pos = data_start + filesize + (-filesize % 4)
        if name != TRAILER:
            entries.append((name, mode, body))
    return entries
