"""Just enough ELF reading for the guest builder: a section's bytes and a binary's DT_NEEDED list.

The builder runs on x86_64 for arm64 guests, so it cannot run the target's `ldd` or `modinfo`;
reading the headers directly works for both architectures (both are ELF64 little-endian).
"""

from __future__ import annotations

import struct

_SHT_DYNAMIC = 6
_DT_NEEDED = 1


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def _sections(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(name offset, type, file offset, size, link) of every section header."""
    if not is_elf(data) or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, _shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    out = []
    for i in range(shnum):
        name, typ, _flags, _addr, off, size, link = struct.unpack_from("<IIQQQQI", data, shoff + i * shentsize)
        out.append((name, typ, off, size, link))
    return out


def section(data: bytes, wanted: str) -> bytes | None:
    """The contents of the section called `wanted`, or None."""
    sections = _sections(data)
    shstrndx, = struct.unpack_from("<H", data, 0x3E)
    _n, _t, stroff, strsize, _l = sections[shstrndx]
    names = data[stroff:stroff + strsize]
    for name, _typ, off, size, _link in sections:
        end = names.index(b"\0", name)
        if names[name:end].decode() == wanted:
            return data[off:off + size]
    return None


def needed(data: bytes) -> list[str]:
    """The shared libraries a binary or library names in DT_NEEDED (empty for static binaries)."""
    sections = _sections(data)
    result: list[str] = []
    for _name, typ, off, size, link in sections:
        if typ != _SHT_DYNAMIC:
            continue
        _n, _t, stroff, strsize, _l = sections[link]
        strtab = data[stroff:stroff + strsize]
        for pos in range(off, off + size, 16):
            tag, val = struct.unpack_from("<qQ", data, pos)
            if tag == 0:
                break
            if tag == _DT_NEEDED:
                result.append(strtab[val:strtab.index(b"\0", val)].decode())
    return result


def modinfo(data: bytes) -> dict[str, list[str]]:
    """A kernel module's .modinfo section as key -> values (keys such as `depends` may repeat)."""
    raw = section(data, ".modinfo") or b""
    info: dict[str, list[str]] = {}
    for item in raw.split(b"\0"):
        if b"=" in item:
            key, _, value = item.decode(errors="replace").partition("=")
            info.setdefault(key, []).append(value)
    return info


def notes(data: bytes, section_name: str = ".notes") -> list[tuple[str, int, bytes]]:
    """(owner, type, descriptor) of each ELF note in a note section (4-byte aligned, as on Linux)."""
    raw = section(data, section_name) or b""
    out: list[tuple[str, int, bytes]] = []
    pos = 0
    while pos + 12 <= len(raw):
        namesz, descsz, typ = struct.unpack_from("<III", raw, pos)
        pos += 12
        name = raw[pos:pos + namesz].rstrip(b"\0").decode(errors="replace")
        pos += (namesz + 3) & ~3
        out.append((name, typ, raw[pos:pos + descsz]))
        pos += (descsz + 3) & ~3
    return out
