"""`kill ID [SIGNAL] [--all]`: signal names (KILL, SIGKILL) or numbers."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)

from backends.linux_native import cgroups, state
from backends.linux_native.errors import BadState, UsageError
from backends.linux_native.tables import SIGNALS


def parse_signal(text: str | None) -> int:
    if not text:
        return 15
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name[3:] if name.startswith("SIG") else name
    if name not in SIGNALS:
        raise UsageError(f"unknown signal {text!r}")
    return SIGNALS[name]


def main(command: str, glob, opts) -> int:
    sig = parse_signal(opts.signal)
    ctr = state.load(glob.root, opts.id)
    status = ctr.status()
    if status in ("stopped", "creating"):
        raise BadState("container not running")
    if opts.all:
        for pid in cgroups.manager_for(ctr.data.get("cgroup") or {}).pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    else:
        os.kill(ctr.pid, sig)
    return 0
