"""`state` (the runtime-spec state JSON) and `list`."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import sys

from backends.linux_native import jsonio, state


def main(command: str, glob, opts) -> int:
    if command == "state":
        sys.stdout.write(jsonio.dumps(state.load(glob.root, opts.id).oci_state()) + "\n")
        return 0
    containers = [state.load(glob.root, cid) for cid in state.list_ids(glob.root)]
    if opts.quiet:
        sys.stdout.write("".join(c.id + "\n" for c in containers))
    elif opts.format == "json":
        sys.stdout.write(jsonio.dumps([c.oci_state() for c in containers]) + "\n")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        for c in containers:
            s = c.oci_state()
            rows.append((c.id, str(s["pid"]), s["status"], s["bundle"], s["created"], _owner(c)))
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            sys.stdout.write("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")
    return 0


def _owner(c: state.Container) -> str:
    try:
        uid = os.stat(c.dir).st_uid
    except OSError:
        return ""
    return "root" if uid == 0 else str(uid)
