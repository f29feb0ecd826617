"""The one interface both backends implement: what the engine asks of a place that runs
containers — this host (`native`) or a Linux VM (`lightvm`).

The engine owns records, names and options; a backend owns the bundle and the running
container. Another backend (Hyper-V, Apple's Virtualization framework) would be one more
class with these methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hostrt.engine.records import ContainerRecord


class Backend(Protocol):
    def prepare(self, record: ContainerRecord, image: Any, layer_dirs: list[Any]) -> list[str]:
        """Build the bundle for `record` from the image's layers; returns the process args."""

    def run_attached(self, record: ContainerRecord, interactive: bool) -> int:
        """Create and start the container attached to our stdio; its exit code once it ends."""

    def start_detached(self, record: ContainerRecord) -> int:
        """Start the container with something watching it after hostrt exits; its init pid."""

    def signal(self, record: ContainerRecord, signal: str, all_processes: bool = False) -> None:
        """Deliver `signal` (a SIG* name) to the container's init (or all its processes)."""

    def started(self, record: ContainerRecord) -> dict | None:
        """{"pid", "started_at"} of a container started for a client that died before it
        recorded the start (the monitor finished it); None otherwise."""

    def ended(self, record: ContainerRecord) -> dict | None:
        """{"exit_code", "oom_killed", "finished_at"} once the container has ended, else None."""

    def pause(self, record: ContainerRecord, resume: bool) -> None:
        """Freeze (or thaw) every process of the container."""

    def exec(self, record: ContainerRecord, command: list[str], env: list[str], workdir: str | None,
             user: str | None, detach: bool, interactive: bool) -> int:
        """Run a further process in the running container; its exit code."""

    def logs(self, record: ContainerRecord) -> list[dict]:
        """The container's output as docker json-file entries (log, stream, time)."""

    def delete(self, record: ContainerRecord) -> None:
        """Remove everything the container owns except its record (runtime state, rootfs)."""
