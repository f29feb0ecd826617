"""The container lifecycle behind `hostrt run/create/start/stop/kill/rm/wait/logs/ps`.

Records say what hostrt knows; the runtime and the monitor say what happened. `refresh`
folds the latter into the former, so `ps` tells the truth after any crash.
"""

from __future__ import annotations

import json
import os
import signal as signals
import time
from dataclasses import dataclass
from pathlib import Path

from hostrt.engine import supervise
from hostrt.engine.records import ConflictError, ContainerRecord, RecordStore
from hostrt.engine.runtime_cli import Runtime, RuntimeCallError, default_runtime
from hostrt.engine.snapshot import unmount_rootfs
from hostrt.errors import CannotExecuteError, CommandNotFoundError, HostrtError, UsageError
from hostrt.network import attach
from hostrt.paths import Paths


def runtime_error(err: RuntimeCallError) -> HostrtError:
    """Docker's mapping of a failed start: 127 not found, 126 cannot execute, else 125."""
    message = str(err)
    if "executable file not found" in message or "no such file or directory" in message.lower():
        return CommandNotFoundError(message)
    if "permission denied" in message.lower():
        return CannotExecuteError(message)
    return HostrtError(message)


def signal_name(text: str) -> str:
    """`KILL`, `SIGKILL`, `9` -> `SIGKILL`, checked against this OS's signals."""
    if text.isdigit():
        try:
            return signals.Signals(int(text)).name
        except ValueError:
            raise UsageError(f"invalid signal: {text}") from None
    name = text.upper() if text.upper().startswith("SIG") else f"SIG{text.upper()}"
    if name not in signals.Signals.__members__:
        raise UsageError(f"invalid signal: {text}")
    return name


@dataclass
class Engine:
    """One hostrt root's containers, run by one runtime binary."""

    paths: Paths
    records: RecordStore
    runtime: Runtime

    @classmethod
    def open(cls, paths: Paths | None = None) -> "Engine":
        paths = paths or Paths.default()
        return cls(paths, RecordStore(paths.containers), Runtime(default_runtime(), paths.runtime_state))

    # -- reading ------------------------------------------------------------------------
    def refresh(self, record: ContainerRecord) -> ContainerRecord:
        """Fold in what happened without hostrt watching: an exit file, or a vanished process."""
        if record.status not in ("running", "paused"):
            return record
        directory = self.records.dir_of(record.id)
        ended = supervise.read_exit(directory)
        if ended is None and record.pid is not None and supervise.pid_exists(record.pid):
            return record
        if ended is None:
            time.sleep(0.2)  # the reaper may be between collecting the status and writing it
            ended = supervise.read_exit(directory)
        if ended is None:
            ended = {"exit_code": 255, "oom_killed": False, "finished_at": time.time()}  # nobody saw it end
        record.status = "exited"
        record.exit_code = int(ended["exit_code"])
        record.oom_killed = bool(ended["oom_killed"])
        record.finished_at = float(ended["finished_at"])
        self.records.save(record)
        return record

    def find(self, ref: str) -> ContainerRecord:
        return self.refresh(self.records.find(ref))

    def list(self, include_stopped: bool) -> list[ContainerRecord]:
        records = [self.refresh(r) for r in self.records.all()]
        return records if include_stopped else [r for r in records if r.status in ("running", "paused")]

    # -- running ------------------------------------------------------------------------
    def mark_started(self, record: ContainerRecord, pid: int) -> None:
        record.status, record.pid, record.started_at = "running", pid, time.time()
        record.exit_code, record.finished_at, record.oom_killed = None, None, False
        (self.records.dir_of(record.id) / supervise.EXIT_FILE).unlink(missing_ok=True)
        self.records.save(record)

    def finish(self, record: ContainerRecord, exit_code: int) -> None:
        """What a foreground run does when its container ends (the monitor does it for -d)."""
        directory = self.records.dir_of(record.id)
        oom = supervise.oom_killed(record.id)
        supervise.write_exit(directory, exit_code, oom)
        self.runtime.delete(record.id, force=True)
        self.refresh(record)
        if record.auto_remove:
            self.remove(record.id, force=True)

    def start_detached(self, record: ContainerRecord) -> None:
        """Hand the container to the monitor, which creates, starts and waits for it."""
        from hostrt.engine.monitor_client import ask_monitor

        self.runtime.delete(record.id, force=True)  # a restart: the old runtime state goes
        reply = ask_monitor(self.paths, self.runtime, {"op": "start", "id": record.id,
                                                       "dir": str(self.records.dir_of(record.id)),
                                                       "auto_remove": record.auto_remove,
                                                       "tty": record.options.tty})
        if not reply.get("ok"):
            if reply.get("pid"):
                self.mark_started(record, int(reply["pid"]))
            raise runtime_error(RuntimeCallError(reply.get("error", "the monitor refused the container")))
        self.mark_started(record, int(reply["pid"]))

    # -- stopping -----------------------------------------------------------------------
    def kill(self, ref: str, signal: str = "SIGKILL") -> ContainerRecord:
        record = self.find(ref)
        if record.status not in ("running", "paused"):
            raise ConflictError(f"container {record.name} is not running")
        try:
            self.runtime.kill(record.id, signal_name(signal))
        except RuntimeCallError as err:
            raise HostrtError(f"cannot kill container {record.name}: {err}") from None
        return record

    def wait(self, ref: str, timeout: float | None = None) -> ContainerRecord:
        """Block until the container is no longer running (polling its exit file)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.find(ref)
            if record.status not in ("running", "paused"):
                return record
            if deadline is not None and time.monotonic() > deadline:
                return record
            time.sleep(0.05)

    def stop(self, ref: str, timeout: float = 10.0) -> ContainerRecord:
        """The stop signal, then SIGKILL after `timeout` seconds, as docker stop."""
        record = self.find(ref)
        if record.status not in ("running", "paused"):
            return record
        if record.status == "paused":
            self.runtime.call("resume", record.id, check=False)
        try:
            self.runtime.kill(record.id, signal_name(record.stop_signal))
        except RuntimeCallError:
            pass  # SIGKILL below once the grace time is over
        record = self.wait(record.id, timeout)
        if record.status in ("running", "paused"):
            self._kill_hard(record)
            record = self.wait(record.id, 10)
        return record

    def _kill_hard(self, record: ContainerRecord) -> None:
        """SIGKILL through the runtime; straight to the init pid if the runtime has lost it."""
        try:
            self.runtime.kill(record.id, "SIGKILL", all_processes=True)
        except RuntimeCallError:
            if record.pid is not None:
                try:
                    os.kill(record.pid, signals.SIGKILL)
                except ProcessLookupError:
                    pass

    def remove(self, ref: str, force: bool = False) -> ContainerRecord:
        """Delete the container and everything it owns; a running one only with force."""
        record = self.find(ref) if isinstance(ref, str) else ref
        if record.status in ("running", "paused"):
            if not force:
                raise ConflictError(
                    f"cannot remove container {record.name}: it is {record.status}; stop it first or use rm -f")
            self._kill_hard(record)
            self.wait(record.id, 10)
        self.runtime.delete(record.id, force=True)
        attach.teardown(self.records.dir_of(record.id), record.id)
        unmount_rootfs(self.records.dir_of(record.id))
        self.records.remove(record.id)
        return record

    def pause(self, ref: str, resume: bool = False) -> ContainerRecord:
        record = self.find(ref)
        wanted, needed = ("running", "paused") if resume else ("paused", "running")
        if record.status != needed:
            raise ConflictError(f"container {record.name} is not {needed}")
        try:
            self.runtime.call("resume" if resume else "pause", record.id)
        except RuntimeCallError as err:
            raise HostrtError(f"cannot {'unpause' if resume else 'pause'} {record.name}: {err}") from None
        record.status = wanted  # type: ignore[assignment]
        self.records.save(record)
        return record

    def log_path(self, record: ContainerRecord) -> Path:
        return self.records.dir_of(record.id) / "container.log"


def read_log_lines(path: Path, tail: int | None) -> list[dict]:
    """The JSON-lines log (rotated file first), optionally only its last `tail` entries."""
    entries: list[dict] = []
    for part in (path.with_name(path.name + ".1"), path):
        try:
            with open(part) as log:
                entries += [json.loads(line) for line in log if line.strip()]
        except (OSError, ValueError):
            continue
    return entries[-tail:] if tail is not None and tail >= 0 else entries

