"""The user's subordinate id ranges (/etc/subuid, /etc/subgid) and the maps made from them.

Inside the rootless namespace uid 0 is the user; 1..N are the user's subordinate ids, range
after range in file order (as Podman maps them). A user without ranges, or a host without
newuidmap/newgidmap (Debian's `uidmap`), gets the single-id map 0 -> user, which an
unprivileged process may write itself (after denying setgroups, for the gid map).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    start: int
    count: int


@dataclass(frozen=True)
class IdMaps:
    uid: int
    gid: int
    uid_ranges: tuple[Range, ...]
    gid_ranges: tuple[Range, ...]

    @property
    def single(self) -> bool:
        """Only the user itself is mapped (no ranges, or no newuidmap/newgidmap to use them)."""
        return not (self.uid_ranges and self.gid_ranges and helpers_present())

    def size(self, kind: str) -> int:
        """How many ids the namespace holds (1 + the subordinate ones)."""
        if self.single:
            return 1
        return 1 + sum(r.count for r in (self.uid_ranges if kind == "uid" else self.gid_ranges))


def helpers_present() -> bool:
    return shutil.which("newuidmap") is not None and shutil.which("newgidmap") is not None


def read_ranges(path: str, name: str | None, ident: int) -> tuple[Range, ...]:
    """The ranges of `path` that name the user by login name or by number."""
    keys = {str(ident)} | ({name} if name else set())
    ranges = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return ()
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in keys or not (parts[1].isdigit() and parts[2].isdigit()):
            continue
        if int(parts[2]) > 0:
            ranges.append(Range(int(parts[1]), int(parts[2])))
    return tuple(ranges)


def for_user(uid: int, gid: int) -> IdMaps:
    import pwd

    try:
        name: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    return IdMaps(uid, gid, read_ranges("/etc/subuid", name, uid), read_ranges("/etc/subgid", name, uid))


def _triples(outer: int, ranges: tuple[Range, ...]) -> list[str]:
    args = ["0", str(outer), "1"]
    inside = 1
    for r in ranges:
        args += [str(inside), str(r.start), str(r.count)]
        inside += r.count
    return args


def apply(pid: int, maps: IdMaps) -> None:
    """Write PID's uid and gid maps (PID has just unshared its user namespace)."""
    if maps.single:
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(f"0 {maps.uid} 1\n")
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")  # an unprivileged gid map requires it
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(f"0 {maps.gid} 1\n")
        return
    import subprocess

    for tool, outer, ranges in (("newuidmap", maps.uid, maps.uid_ranges), ("newgidmap", maps.gid, maps.gid_ranges)):
        done = subprocess.run([tool, str(pid), *_triples(outer, ranges)], capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise OSError(f"{tool} failed: {lines[-1] if lines else f'exit {done.returncode}'}")


def current() -> str:
    """This process's uid map as one line ("0 1000 1, 1 100000 65536"), for `hostrt info`."""
    try:
        with open("/proc/self/uid_map") as f:
            return ", ".join(" ".join(line.split()) for line in f.read().splitlines())
    except OSError:
        return "unknown"

