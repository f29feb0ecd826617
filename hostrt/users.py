"""Resolve a docker `--user` value against the image's own /etc/passwd and /etc/group.

The files are read from the container's rootfs, never the host's: `nobody` in the image may
have a different uid than on the host. Symlinks inside the rootfs are not followed out of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hostrt.errors import UsageError


@dataclass(frozen=True)
class ResolvedUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


def _read_table(rootfs: Path, name: str) -> list[list[str]]:
    """The rows of the image's /etc/NAME, opened inside the rootfs (inroot.py): neither a
    link at /etc nor at the file can make it read the host's."""
    import os
    import stat
    import sys

    if not sys.platform.startswith("linux"):
        return _read_table_unlinked(rootfs, name)
    from backends.linux_native import inroot

    try:
        held = inroot.open_in_root(str(rootfs), f"/etc/{name}", follow_last=False)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(held).st_mode):
            return []
        with open(inroot.fd_path(held), errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    finally:
        os.close(held)
    return _rows(text)


def _read_table_unlinked(rootfs: Path, name: str) -> list[list[str]]:
    """macOS and Windows build a VM container's spec from the unpacked layer, without Linux's
    openat2 or /proc: there /etc and the file must be a real directory and a regular file (an
    image's are), a link is not followed at all."""
    import stat

    try:
        if not stat.S_ISDIR((rootfs / "etc").lstat().st_mode):
            return []
        table = rootfs / "etc" / name
        if not stat.S_ISREG(table.lstat().st_mode):
            return []
        text = table.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return _rows(text)


def _rows(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _lookup_group(groups: list[list[str]], spec: str) -> int:
    if spec.isdigit():
        return int(spec)
    for row in groups:
        if len(row) >= 3 and row[0] == spec and row[2].isdigit():
            return int(row[2])
    raise UsageError(f"unable to find group {spec}: no matching entries in the image's /etc/group")


def resolve_user(spec: str | None, rootfs: Path) -> ResolvedUser:
    """`name`, `uid`, `name:group`, `uid:gid` (empty: root), as docker resolves them."""
    user_part, _, group_part = (spec or "").partition(":")
    passwd = _read_table(rootfs, "passwd")
    groups = _read_table(rootfs, "group")
    uid, gid, home, name = 0, 0, "/root", "root"
    if user_part:
        entry = next((row for row in passwd if len(row) >= 6 and (row[0] == user_part or row[2] == user_part)), None)
        if entry is not None and entry[2].isdigit() and entry[3].isdigit():
            uid, gid, home, name = int(entry[2]), int(entry[3]), entry[5] or "/", entry[0]
        elif user_part.isdigit():
            uid, gid, home, name = int(user_part), 0, "/", ""  # unknown uid: docker uses gid 0
        else:
            raise UsageError(f"unable to find user {user_part}: no matching entries in the image's /etc/passwd")
    if group_part:
        gid = _lookup_group(groups, group_part)
    additional = tuple(
        sorted({int(row[2]) for row in groups if len(row) >= 4 and row[2].isdigit() and name and name in row[3].split(",")} - {gid})
    )
    return ResolvedUser(uid=uid, gid=gid, additional_gids=additional, home=home)
