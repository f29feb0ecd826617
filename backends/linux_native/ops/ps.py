"""`ps ID [--format json] [-- PS_ARGS]`: the processes of the container's cgroup."""

from __future__ import annotations

import sys

from backends.linux_native import cgroups, jsonio, state
from backends.linux_native.errors import RuntimeFailure


def main(command: str, glob, opts) -> int:
    ctr = state.load(glob.root, opts.id)
    pids = cgroups.manager_for(ctr.data.get("cgroup") or {}).pids()
    if opts.format == "json":
        sys.stdout.write(jsonio.dumps(pids) + "\n")
        return 0
    import subprocess

    args = opts.ps_args or ["-ef"]
    try:
        out = subprocess.run(["ps", *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeFailure(f"ps {' '.join(args)}: {exc}") from None
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise RuntimeFailure("ps output has no PID column")
    column = header.index("PID")
    wanted = set(pids)
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in wanted:
            sys.stdout.write(line + "\n")
    return 0
