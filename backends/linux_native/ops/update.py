"""`update ID [flags | -r resources.json]`: new cgroup limits for a live container."""

from __future__ import annotations

import sys

from backends.linux_native import cgroups, jsonio, state
from backends.linux_native.errors import BadState, UsageError

_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

# flag dest -> (resources section, key, parser)
FLAGS = {
    "memory": ("memory", "limit", "bytes"), "memory_reservation": ("memory", "reservation", "bytes"),
    "memory_swap": ("memory", "swap", "bytes"), "kernel_memory": ("memory", "kernel", "bytes"),
    "cpu_shares": ("cpu", "shares", "int"), "cpu_quota": ("cpu", "quota", "int"),
    "cpu_period": ("cpu", "period", "int"), "cpuset_cpus": ("cpu", "cpus", "str"),
    "cpuset_mems": ("cpu", "mems", "str"), "pids_limit": ("pids", "limit", "int"),
    "blkio_weight": ("blockIO", "weight", "int"),
}


def parse_bytes(text: str) -> int:
    text = str(text).strip().lower().rstrip("b")
    if text in ("-1", "max"):
        return -1
    if text and text[-1] in _SUFFIX:
        return int(float(text[:-1]) * _SUFFIX[text[-1]])
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"invalid size {text!r}") from None


def main(command: str, glob, opts) -> int:
    ctr = state.load(glob.root, opts.id)
    if ctr.status() == "stopped":
        raise BadState("container not running")
    resources: dict = {}
    if opts.resources:
        data = sys.stdin.read() if opts.resources == "-" else open(opts.resources).read()
        resources = jsonio.loads(data)  # type: ignore[assignment]
    for dest, (section, key, kind) in FLAGS.items():
        value = getattr(opts, dest)
        if value is None:
            continue
        resources.setdefault(section, {})[key] = parse_bytes(value) if kind == "bytes" else value
    applied = resources
    if resources.get("devices") is not None:  # new device rules: the nodes of linux.devices stay usable
        from backends.linux_native.cgroups.device_rules import node_allows

        nodes = ((ctr.data.get("config") or {}).get("linux") or {}).get("devices") or ()
        applied = dict(resources, devices=list(resources["devices"]) + node_allows(
            [(d.get("type", "c"), int(d.get("major", 0)), int(d.get("minor", 0))) for d in nodes]))
    cgroups.manager_for(ctr.data.get("cgroup") or {}).set(applied)
    config = ctr.data.setdefault("config", {}).setdefault("linux", {})
    merged = config.setdefault("resources", {})
    for section, values in resources.items():
        if isinstance(values, dict):
            merged.setdefault(section, {}).update(values)
        else:
            merged[section] = values
    ctr.save()
    return 0
