"""`events [--stats] [--interval D] ID`: runc's event stream, one JSON object per line.
`--stats` prints the container's cgroup statistics once; otherwise an {"type": "oom"}
line for every OOM kill as it happens and a stats line every interval, until the
container's init exits. Waiting is poll() on the OOM watch and a pidfd of the init."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import select
import sys

from backends.linux_native import cgroups, jsonio, state
from backends.linux_native.errors import BadState, UsageError

_UNITS = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))


def parse_interval(text: str | None) -> float:
    """A Go duration as runc takes it ("5s", "250ms", "1m"); seconds."""
    if not text:
        return 5.0
    for unit, scale in _UNITS:
        number = text[: -len(unit)]
        if text.endswith(unit) and number.replace(".", "", 1).isdigit():
            return float(number) * scale
    raise UsageError(f"invalid interval {text!r} (e.g. 5s, 250ms)")


def _emit(kind: str, cid: str, data: dict | None = None) -> None:
    event: dict = {"type": kind, "id": cid}
    if data is not None:
        event["data"] = data
    sys.stdout.write(jsonio.dumps(event) + "\n")
    sys.stdout.flush()


def main(command: str, glob, opts) -> int:
    ctr = state.load(glob.root, opts.id)
    interval = parse_interval(opts.interval)
    if ctr.status() == "stopped":
        raise BadState(f"container {ctr.id} is not running")
    manager = cgroups.manager_for(ctr.data.get("cgroup") or {})
    if opts.stats:
        _emit("stats", ctr.id, manager.stats())
        return 0
    watch = manager.watch_oom()
    pidfd = os.pidfd_open(ctr.pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if watch is not None:
        poller.register(watch.fileno(), watch.events)
    try:
        while True:
            ready = {fd for fd, _ in poller.poll(int(interval * 1000))}
            if watch is not None and (watch.fileno() in ready or pidfd in ready):
                for _ in range(watch.pending()):
                    _emit("oom", ctr.id)
            if pidfd in ready:
                return 0
            if not ready:
                _emit("stats", ctr.id, manager.stats())
    finally:
        os.close(pidfd)
        if watch is not None:
            watch.close()
