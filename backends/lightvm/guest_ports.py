"""The guest half of a VM container's published ports: what the guest's proxy listens on.

QEMU forwards host 127.0.0.1:HOSTPORT to the guest's user-net address on the same port
number (`ports.py`); in the guest, the proxy of the shared monitor (detached) or of the
attached `run` listens there and makes its upstream sockets inside the container's own
network namespace, connecting to 127.0.0.1:CONTAINERPORT. The container keeps a namespace
with loopback only: no guest bridge, no address to manage, nothing left in the guest when
it ends. Standard library only (runs in the guest).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

GUEST_ADDRESS = "10.0.2.15"  # the fixed address the guest's /init gives eth0 on QEMU's user network
NETWORK_FILE = "network.json"  # read by hostrt.network.proxy.open_for, as on the host


def write(container_dir: Path, ports: list[dict]) -> None:
    """Record the ports the guest listens on for this container (nothing if it publishes none)."""
    if not ports:
        return
    attachment = {"mode": "vm", "address": "127.0.0.1", "enter": "init.pid",
                  "ports": [{**port, "host_ip": GUEST_ADDRESS} for port in ports]}
    temp = container_dir / (NETWORK_FILE + ".tmp")
    temp.write_text(json.dumps(attachment))
    os.replace(temp, container_dir / NETWORK_FILE)


def keep_served(container_id: str, directory: Path, root: Path, runtime: Callable) -> None:
    """Restart the guest's monitor if it died while serving this running container's ports:
    the new one takes them over (hostrt.network.takeover), as on the host."""
    if not (directory / "published.json").exists():
        return
    from hostrt.engine.monitor_client import ensure_monitor, socket_path
    from hostrt.network.takeover import served, served_file
    from hostrt.paths import Paths

    paths = Paths(root=root, run=root / "run")
    if container_id in served(served_file(socket_path(paths))):
        ensure_monitor(paths, runtime())
