"""Memory of host processes, read from /proc: PSS for shared-aware sums, RSS for a single QEMU.

PSS (proportional set size) charges each shared page to its sharers in equal parts, so the
PSS of several processes adds up to what they really occupy together; RSS counts shared
pages in full and is the usual figure for one QEMU process.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def _status_kib(pid: int, field: str) -> int:
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """The process's PSS in KiB (smaps_rollup: one read, no page walk in Python)."""
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    try:
        return _status_kib(pid, "VmRSS")
    except OSError:
        return 0


def _parents() -> dict[int, int]:
    found: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # the comm may hold spaces and ')'
    return found


def with_descendants(pids: Iterable[int]) -> set[int]:
    """The given processes and every process below them."""
    parents = _parents()
    found = set(pids)
    grew = True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in found and pid not in found}
        found |= below
        grew = bool(below)
    return found


def find_by_cmdline(*needles: str) -> list[int]:
    """Processes whose command line holds every needle (e.g. QEMU's `guest=NAME,`)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(needle in cmdline for needle in needles):
            found.append(int(entry.name))
    return found
