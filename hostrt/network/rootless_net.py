"""The network of a rootless container on the default network: a namespace of its own,
connected to the host's network by a user-mode stack (slirp4netns or pasta), as Podman does.

An ordinary user cannot make bridges or veths in the host's network namespace, so instead
of `bridge.py` this makes the container's namespace file (as `netns.py` does, loopback up)
and hands it to the user-mode networking module, `hostrt.network.slirp`, which must offer:

    start(netns: Path, ports: list[dict], container_dir: Path) -> int
        connect the namespace at `netns` (its tap, address, route, DNS forwarder) and
        publish `ports` (the `-p` dicts of RunOptions.publish); returns the pid of the
        process that serves it, which lives until `stop`.
    stop(pid: int) -> None
        end that process; safe to call when it is already gone.

Until that module is installed the default network fails with one line that says what
works instead (`--network none` or `--network host`).
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

from hostrt.errors import HostrtError

MODULE = "hostrt.network.slirp"
RESOLV_CONF = "nameserver 10.0.2.3\n"  # slirp4netns's built-in DNS forwarder


def available() -> bool:
    """Whether the user-mode networking module is installed."""
    return importlib.util.find_spec(MODULE) is not None


def unavailable_error(network: str) -> HostrtError:
    return HostrtError(f"rootless: --network {network} needs user-mode networking (slirp4netns), which this hostrt "
                       "does not have yet; use --network none or --network host")


def create_netns(path: Path) -> None:
    """An empty namespace on `path` with loopback up (root of the user namespace may)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch()
    done = subprocess.run(["unshare", f"--net={path}", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if done.returncode != 0:
        raise HostrtError(f"cannot set up the network namespace {path}: {done.stderr.strip()}")


def start(netns: Path, ports: list[dict], container_dir: Path) -> int:
    import importlib

    return int(importlib.import_module(MODULE).start(netns, ports, container_dir))


def stop(pid: int) -> None:
    import importlib

    importlib.import_module(MODULE).stop(pid)
