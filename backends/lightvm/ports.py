"""The host half of a VM container's published ports: QEMU user-net forwards, added and removed
with the container through the machine's monitor (HMP `hostfwd_add`/`hostfwd_remove`).

host 127.0.0.1:HOSTPORT --QEMU--> guest 10.0.2.15:HOSTPORT --guest proxy--> container 127.0.0.1:PORT

The guest listens on the host port's own number: the host port is unique on the host (QEMU
binds it), so it is unique in the guest too, and nothing needs to be read back from the
guest before the forward is made. Forwards listen on 127.0.0.1 only (a VM's ports are the
user's, not the LAN's). `vmports.json` in the host container directory holds the plan (made
at create: a port 0 gets a free port then, kept across restarts) and the forwards that are
up, each listed before QEMU is asked for it, so `system prune` can remove forwards a killed
hostrt left behind; a forward QEMU refused is dropped from the list at once (that port's
rule may be another container's, and must not be removed with this one).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from backends.lightvm.guest_ports import GUEST_ADDRESS
from hostrt.engine import failpoints
from hostrt.errors import HostrtError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

PLAN_FILE = "vmports.json"
PUBLISHED_FILE = "published.json"  # what `hostrt port` and `inspect` read, as for native containers
LOOPBACK = "127.0.0.1"


class PortForwardError(HostrtError):
    """QEMU refused a forward (the host port is taken)."""


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def plan(container_dir: Path, machine: Path, publish: list[dict]) -> list[dict]:
    """Fix each `-p` to 127.0.0.1 and a host port; the ports the guest must listen on."""
    ports = []
    for spec in publish:
        if spec["host_ip"] not in ("0.0.0.0", LOOPBACK):
            raise UsageError(f"invalid -p address {spec['host_ip']}: ports of a VM container listen on {LOOPBACK} only")
        kind = socket.SOCK_STREAM if spec["protocol"] == "tcp" else socket.SOCK_DGRAM
        ports.append({**spec, "host_ip": LOOPBACK, "host_port": spec["host_port"] or _free_port(kind)})
    if ports:
        _save(container_dir, {"machine": str(machine), "ports": ports, "up": []})
    return ports


def _save(container_dir: Path, state: dict) -> None:
    temp = container_dir / (PLAN_FILE + ".tmp")
    temp.write_text(json.dumps(state))
    os.replace(temp, container_dir / PLAN_FILE)


def _load(container_dir: Path) -> dict | None:
    try:
        return json.loads((container_dir / PLAN_FILE).read_text())
    except (OSError, ValueError):
        return None


def _rule(port: dict) -> str:
    return f"{port['protocol']}:{LOOPBACK}:{port['host_port']}"


def _hmp(machine: str, command: str) -> str:
    """One HMP command on the machine's QEMU, through its driver; its output ("" when all went well)."""
    from backends.lightvm.machine_dir import MachineDir
    from backends.lightvm.machines import driver_of

    found = MachineDir(Path(machine))
    try:
        driver = driver_of(found)
    except (OSError, ValueError):
        raise PortForwardError(f"cannot forward ports into machine {found.name}: it no longer exists") from None
    return driver.monitor(found, command)


def open_forwards(container_dir: Path) -> None:
    """Make every planned forward, or none (a taken port: one-line error, the others removed)."""
    from backends.lightvm.domain import NET_ID

    close_forwards(container_dir)  # any left up by a hostrt killed during an earlier start
    state = _load(container_dir)
    if state is None:
        return
    for port in state["ports"]:
        up = state["up"]
        state["up"] = [*up, port]
        _save(container_dir, state)  # before QEMU holds it
        failure = None
        try:
            output = _hmp(state["machine"], f"hostfwd_add {NET_ID} {_rule(port)}-{GUEST_ADDRESS}:{port['host_port']}")
            if output:
                failure = PortForwardError(f"cannot publish {LOOPBACK}:{port['host_port']}/{port['protocol']}: "
                                           f"the port is taken on the host ({output.splitlines()[0]})")
        except PortForwardError as err:
            failure = err
        if failure is not None:
            state["up"] = up  # not ours: the rule of that port may be another container's
            _save(container_dir, state)
            close_forwards(container_dir)
            raise failure
        failpoints.reached("vm-after-forward")
    (container_dir / PUBLISHED_FILE).write_text(json.dumps(state["ports"]))


def close_forwards(container_dir: Path) -> bool:
    """Remove the container's forwards that are up (each removal may already be done); whether there were any."""
    from backends.lightvm.domain import NET_ID

    state = _load(container_dir)
    (container_dir / PUBLISHED_FILE).unlink(missing_ok=True)
    if state is None or not state["up"] or "machine" not in state:
        return False
    for port in state["up"]:
        try:  # "not found" for a port whose add failed, or once the machine restarted; fine
            _hmp(state["machine"], f"hostfwd_remove {NET_ID} {_rule(port)}")
        except PortForwardError:
            break  # the machine is gone, and its forwards with it
    _save(container_dir, {**state, "up": []})
    return True


def prune(containers_dir: Path, unused: "Callable[[str], AbstractContextManager[bool]]") -> list[str]:
    """Forwards whose container is not running (or has no record left): removed. `unused(id)`
    holds that container for its block and says whether it is not running (asked late: a
    container may start meanwhile)."""
    removed = []
    for path in containers_dir.glob(f"*/{PLAN_FILE}"):
        with unused(path.parent.name) as free:
            if free and close_forwards(path.parent):
                removed.append(f"port forwards of {path.parent.name[:12]}")
    return removed
