"""Published ports that outlive a SIGKILLed monitor: recorded while served, taken over by the next one.

The monitor holds the listeners of every detached container's published ports in its own
process. Killed, it takes them along while the containers keep running. So it keeps a
list of the containers it serves (`<socket name>.served.json` beside its socket, rewritten
whole on each change; one per monitor, as there is one monitor per caller's context); the next monitor (started by the next hostrt command that finds the old
one gone) binds the same ports again for each container whose init still runs, and
watches that init through a pidfd (it is no longer our child) to close them when it
ends. Ports that cannot be bound again, or whose container is gone, are dropped from
`published.json`, so `hostrt port` never shows a port nobody serves. Standard library only.
"""

from __future__ import annotations

import json
import os
import selectors
import sys
from collections.abc import Callable
from pathlib import Path

from hostrt.network import proxy

def served_file(socket_path: Path) -> Path:
    """The list kept by the monitor listening on `socket_path`."""
    return socket_path.with_name(socket_path.stem + ".served.json")


def served(listing: Path) -> dict[str, str]:
    """{container id: container dir} of the containers whose ports the monitor serves."""
    try:
        return json.loads(listing.read_text())
    except (OSError, ValueError):
        return {}


def mark(listing: Path, container_id: str, directory: Path | None) -> None:
    """Add (`directory`) or drop (None) a container in the served list `listing`."""
    current = served(listing)
    if directory is None and container_id not in current:
        return
    if directory is None:
        del current[container_id]
    else:
        current[container_id] = str(directory)
    temp = listing.with_name(listing.name + ".tmp")
    temp.write_text(json.dumps(current))
    os.replace(temp, listing)


class Adopted:
    """A running container taken over from a dead monitor: its ports until its init exits."""

    def __init__(self, container_id: str, directory: Path, pidfd: int, ports: proxy.PortProxy,
                 on_end: Callable[["Adopted"], None]) -> None:
        self.container_id, self.directory, self.pidfd, self.ports, self.on_end = container_id, directory, pidfd, ports, on_end

    def ready(self, mask: int) -> None:
        """The pidfd is readable: the container's init has exited."""
        self.ports.selector.unregister(self.pidfd)
        os.close(self.pidfd)
        proxy.closed(self.directory, self.ports)
        self.on_end(self)


def _init_pidfd(directory: Path) -> int | None:
    """A pidfd on the container's init if it still runs (and has not been seen to exit)."""
    if (directory / "exit.json").exists():
        return None
    try:
        return os.pidfd_open(int((directory / "init.pid").read_text()))
    except (OSError, ValueError):
        return None


def take_over(listing: Path, selector: selectors.BaseSelector, on_end: Callable[[Adopted], None]) -> list[Adopted]:
    """Serve again the ports of every listed container that still runs; forget the others."""
    adopted = []
    for container_id, name in served(listing).items():
        directory = Path(name)
        pidfd = _init_pidfd(directory) if (directory / proxy.PUBLISHED_FILE).exists() else None
        ports = None
        if pidfd is not None:
            try:
                ports = proxy.open_for(directory, selector, again=True)
            except OSError as err:
                print(f"monitor: cannot take over the ports of {container_id[:12]}: {err}", file=sys.stderr)
        if ports is None:
            if pidfd is not None:
                os.close(pidfd)
            proxy.closed(directory, None)
            mark(listing, container_id, None)
            continue
        item = Adopted(container_id, directory, pidfd, ports, on_end)
        selector.register(pidfd, selectors.EVENT_READ, item)
        adopted.append(item)
    return adopted
