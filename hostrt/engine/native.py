"""The native backend: containers on this host, run by a runc-compatible runtime binary.

Foreground runs are supervised by the hostrt process itself (`foreground.py`), detached ones
by the shared monitor daemon (`monitor.py`); both leave an exit file beside the record.
"""

from __future__ import annotations

import os
import signal as signals
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostrt.engine import supervise
from hostrt.engine.bundle import prepare_bundle
from hostrt.engine.runtime_cli import Runtime, RuntimeCallError
from hostrt.engine.snapshot import unmount_rootfs
from hostrt.errors import HostrtError, start_failure
from hostrt.network import attach
from hostrt.paths import Paths
from hostrt.spec import platform_architecture

if TYPE_CHECKING:
    from collections.abc import Callable

    from hostrt.engine.record_store import BaseRecordStore as RecordStore
    from hostrt.engine.records import ContainerRecord


def runtime_error(err: RuntimeCallError) -> HostrtError:
    """Docker's mapping of a failed start: 127 not found, 126 cannot execute, else 125."""
    return start_failure(str(err))


class NativeBackend:
    """Containers on this host; `on_started` lets the engine record the init pid."""

    def __init__(self, paths: Paths, records: RecordStore, runtime: Runtime,
                 on_started: "Callable[[ContainerRecord, int], None]") -> None:
        self.paths, self.records, self.runtime, self.on_started = paths, records, runtime, on_started
        self._monitor_checked = False

    def directory(self, record: ContainerRecord) -> Path:
        return self.records.dir_of(record.id)

    def log_path(self, record: ContainerRecord) -> Path:
        return self.directory(record) / "container.log"

    def prepare(self, record: ContainerRecord, image: Any, layer_dirs: list[Path]) -> list[str]:
        spec = prepare_bundle(self.directory(record), record.id, image.config, record.options, layer_dirs,
                              platform_architecture(record.platform), self.paths)
        return spec["process"]["args"]

    def run_attached(self, record: ContainerRecord, interactive: bool) -> int:
        from hostrt.engine.foreground import run_attached
        from hostrt.network.proxy import ThreadedProxy

        self._reset(record)
        try:
            ports = ThreadedProxy(self.directory(record))  # this process serves the published ports while it waits
        except OSError as err:
            raise HostrtError(err.strerror or str(err)) from None  # one line, without "[Errno N]"
        try:
            code = run_attached(self, record, interactive)
        finally:
            ports.close()
        self.runtime.delete(record.id, force=True)
        return code

    def _reset(self, record: ContainerRecord) -> None:
        """Before a (re)start: no runtime state or exit file of an earlier run may remain."""
        self.runtime.delete(record.id, force=True)
        for name in (supervise.EXIT_FILE, supervise.STARTED_FILE):
            (self.directory(record) / name).unlink(missing_ok=True)
        supervise.reserve_exit(self.directory(record))

    def record_end(self, record: ContainerRecord, exit_code: int) -> None:
        """Write the exit file for a container this process waited for."""
        supervise.write_exit(self.directory(record), exit_code, supervise.oom_killed(record.id))

    def start_detached(self, record: ContainerRecord) -> int:
        from hostrt.engine.monitor_client import ask_monitor

        self._reset(record)
        # The container's lock goes with the request: if this process dies before it records
        # the start, the monitor still holds the container until it has written `started`.
        reply = ask_monitor(self.paths, self.runtime, {"op": "start", "id": record.id, "dir": str(self.directory(record)),
                                                       "auto_remove": record.auto_remove, "tty": record.options.tty},
                            lock_fd=self.records.lock_fd(record.id))
        if not reply.get("ok"):
            if reply.get("pid"):
                self.on_started(record, int(reply["pid"]))
            raise runtime_error(RuntimeCallError(reply.get("error", "the monitor refused the container")))
        return int(reply["pid"])

    def signal(self, record: ContainerRecord, signal: str, all_processes: bool = False) -> None:
        try:
            self.runtime.kill(record.id, signal, all_processes=all_processes)
        except RuntimeCallError:
            if record.pid is None or signal != "SIGKILL":
                raise
            try:  # the runtime has lost track of it: the init pid is still ours to end
                os.kill(record.pid, signals.SIGKILL)
            except ProcessLookupError:
                pass

    def started(self, record: ContainerRecord) -> dict | None:
        return supervise.read_started(self.directory(record))

    def ended(self, record: ContainerRecord) -> dict | None:
        directory = self.directory(record)
        ended = supervise.read_exit(directory)
        if ended is None and record.pid is not None and supervise.pid_exists(record.pid):
            self._keep_ports_served(record)
            return None
        if ended is None:
            time.sleep(0.2)  # the reaper may be between collecting the status and writing it
            ended = supervise.read_exit(directory)
        if ended is None:  # nobody saw it end (a killed monitor): nor does anyone serve its ports now
            (directory / "published.json").unlink(missing_ok=True)
        return ended or {"exit_code": 255, "oom_killed": False, "finished_at": time.time()}

    def _keep_ports_served(self, record: ContainerRecord) -> None:
        """A running container whose ports the monitor served: restart a dead monitor, which serves them again."""
        if self._monitor_checked or not (self.directory(record) / "published.json").exists():
            return
        from hostrt.engine.monitor_client import socket_path
        from hostrt.network.takeover import served, served_file

        # Only this context's monitor: one restarted from another context would serve them elsewhere.
        if record.id in served(served_file(socket_path(self.paths))):
            self._monitor_checked = True  # once per command: one restart serves every container
            from hostrt.engine.monitor_client import ensure_monitor

            ensure_monitor(self.paths, self.runtime)

    def pause(self, record: ContainerRecord, resume: bool) -> None:
        self.runtime.call("resume" if resume else "pause", record.id)

    def exec(self, record: ContainerRecord, command: list[str], env: list[str], workdir: str | None,
             user: str | None, detach: bool, interactive: bool) -> int:
        from hostrt.users import resolve_user

        args = ["exec"] + [f"--env={item}" for item in env] + (["--detach"] if detach else [])
        if workdir:
            args.append(f"--cwd={workdir}")
        if user:
            resolved = resolve_user(user, self.directory(record) / "rootfs")
            args.append(f"--user={resolved.uid}:{resolved.gid}")
        # The command's own output goes straight to ours; the runtime's errors are kept to map them.
        done = self.runtime.call(*args, record.id, *command, stdin=None if interactive else subprocess.DEVNULL,
                                 stdout=None, stderr=subprocess.PIPE, check=False, timeout=None)
        errors = done.stderr.decode(errors="replace")
        if done.returncode != 0 and ("executable file not found" in errors or "permission denied" in errors):
            raise runtime_error(RuntimeCallError(errors.strip().splitlines()[-1]))
        sys.stderr.write(errors)
        return done.returncode

    def logs(self, record: ContainerRecord) -> list[dict]:
        from hostrt.engine.logfile import read_entries

        return read_entries(self.log_path(record))

    def delete(self, record: ContainerRecord) -> None:
        self.runtime.delete(record.id, force=True)
        attach.teardown(self.directory(record), record.id)
        unmount_rootfs(self.directory(record))
