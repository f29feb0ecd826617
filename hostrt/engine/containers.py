"""The container lifecycle behind `hostrt run/create/start/stop/kill/rm/wait/logs/ps`.

Records say what hostrt knows; the backend that runs a container says what happened to it.
`refresh` folds the latter into the former, so `ps` tells the truth after any crash.
"""

from __future__ import annotations

import signal as signals
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hostrt.engine import failpoints
from hostrt.engine.backend import Backend
from hostrt.engine.record_store import BaseRecordStore, ConflictError
from hostrt.engine.runtime_cli import Runtime, RuntimeCallError
from hostrt.errors import HostrtError, UsageError
from hostrt.paths import Paths

if TYPE_CHECKING:
    from hostrt.engine.records import ContainerRecord

ACTIVE = ("running", "paused")


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
    """One hostrt root's containers and the backends that run them."""

    paths: Paths
    records: BaseRecordStore  # a RecordStore of pydantic records, or the fast path's plain one
    runtime: Runtime
    _backends: dict[str, Backend] = field(default_factory=dict)

    @classmethod
    def open(cls, paths: Paths | None = None) -> "Engine":
        from hostrt.engine.records import RecordStore

        paths = paths or Paths.default()
        return cls(paths, RecordStore(paths.containers), Runtime.local(paths.runtime_state))

    def backend(self, record_or_name: ContainerRecord | str) -> Backend:
        """The backend running a record (created on first use: the VM one imports paramiko)."""
        name = record_or_name if isinstance(record_or_name, str) else record_or_name.backend
        if name not in self._backends:
            if name == "native":
                from hostrt.engine.native import NativeBackend

                self._backends[name] = NativeBackend(self.paths, self.records, self.runtime, self.mark_started)
            else:
                from backends.lightvm.vm_backend import LightVMBackend

                self._backends[name] = LightVMBackend(self.paths, self.mark_started)
        return self._backends[name]

    # -- reading ------------------------------------------------------------------------
    def refresh(self, record: ContainerRecord) -> ContainerRecord:
        """Fold in what happened without hostrt watching: a start whose client died, an exit,
        or a vanished process. Written back when no other command holds the container; a
        write that fails (a full disk) leaves the record as it was, to be folded again."""
        changed = False
        if record.status == "created":
            started = self.backend(record).started(record)
            if started is None:
                return record
            record.status, record.pid, record.started_at = "running", int(started["pid"]), float(started["started_at"])
            changed = True
        if record.status not in ACTIVE:
            return record
        ended = self.backend(record).ended(record)
        if ended is not None:
            record.status = "exited"
            record.exit_code = int(ended["exit_code"])
            record.oom_killed = bool(ended["oom_killed"])
            record.finished_at = float(ended["finished_at"])
            changed = True
        if changed:
            try:
                self.records.save_if_free(record)
            except OSError:
                pass
        return record

    def find(self, ref: str) -> ContainerRecord:
        return self.refresh(self.records.find(ref))

    def list(self, include_stopped: bool) -> list[ContainerRecord]:
        records = [self.refresh(r) for r in self.records.all()]
        return records if include_stopped else [r for r in records if r.status in ACTIVE]

    # -- running ------------------------------------------------------------------------
    def mark_started(self, record: ContainerRecord, pid: int) -> None:
        """Record the start; from now on the container is no longer this command's alone."""
        record.status, record.pid, record.started_at = "running", pid, time.time()
        record.exit_code, record.finished_at, record.oom_killed = None, None, False
        self.records.save(record)
        self.records.started(record.id)

    def run_attached(self, record: ContainerRecord, interactive: bool) -> int:
        """Run in the foreground; the container's exit code. `--rm` removes it however it ends."""
        try:
            self.records.hold_until_started(record.id)
            code = self.backend(record).run_attached(record, interactive)
            self.refresh(record)
            return code
        finally:
            self.records.started(record.id)  # a start that failed
            if record.auto_remove:
                self.remove(record, force=True)

    def start_detached(self, record: ContainerRecord) -> None:
        """Start under the container's lock, which goes to the monitor with the request."""
        with self.records.locked(record.id):
            self.mark_started(record, self.backend(record).start_detached(record))

    # -- stopping -----------------------------------------------------------------------
    def kill(self, ref: str, signal: str = "SIGKILL") -> ContainerRecord:
        record = self.find(ref)
        if record.status not in ACTIVE:
            raise ConflictError(f"container {record.name} is not running")
        try:
            self.backend(record).signal(record, signal_name(signal))
        except RuntimeCallError as err:
            raise HostrtError(f"cannot kill container {record.name}: {err}") from None
        return record

    def wait(self, ref: str, timeout: float | None = None) -> ContainerRecord:
        """Block until the container is no longer running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.find(ref)
            if record.status not in ACTIVE:
                return record
            if deadline is not None and time.monotonic() > deadline:
                return record
            time.sleep(0.05)

    def stop(self, ref: str, timeout: float = 10.0) -> ContainerRecord:
        """The stop signal, then SIGKILL after `timeout` seconds, as docker stop."""
        record = self.find(ref)
        if record.status not in ACTIVE:
            return record
        backend = self.backend(record)
        if record.status == "paused":
            backend.pause(record, resume=True)
        try:
            backend.signal(record, signal_name(record.stop_signal))
        except RuntimeCallError:
            pass  # SIGKILL below once the grace time is over
        record = self.wait(record.id, timeout)
        if record.status in ACTIVE:
            backend.signal(record, "SIGKILL", all_processes=True)
            record = self.wait(record.id, 10)
        return record

    def remove(self, ref: str | ContainerRecord, force: bool = False) -> ContainerRecord:
        """Delete the container and everything it owns; a running one only with force."""
        record = self.find(ref) if isinstance(ref, str) else ref
        with self.records.locked(record.id):
            record = self.refresh(self.records.load(record.id) or record)  # as it is now, not as first read
            backend = self.backend(record)
            if record.status in ACTIVE:
                if not force:
                    raise ConflictError(
                        f"cannot remove container {record.name}: it is {record.status}; stop it first or use rm -f")
                try:
                    backend.signal(record, "SIGKILL", all_processes=True)
                except HostrtError:
                    pass  # already gone
                self.wait(record.id, 10)
            backend.delete(record)
            failpoints.reached("rm-after-delete")
            self.records.remove(record.id)
        return record

    def pause(self, ref: str, resume: bool = False) -> ContainerRecord:
        record = self.find(ref)
        wanted, needed = ("running", "paused") if resume else ("paused", "running")
        if record.status != needed:
            raise ConflictError(f"container {record.name} is not {needed}")
        try:
            self.backend(record).pause(record, resume)
        except RuntimeCallError as err:
            raise HostrtError(f"cannot {'unpause' if resume else 'pause'} {record.name}: {err}") from None
        record.status = wanted  # type: ignore[assignment]
        self.records.save(record)
        return record
