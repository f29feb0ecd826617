"""The QEMU driver: hostrt starts `qemu-system-*` itself and controls it over QMP.

Used wherever libvirt cannot run QEMU (macOS, Windows) or no libvirtd is reachable. Per
machine directory: `qemu.json` (the command line, kept for a restore, which must rebuild the
same devices), `qemu.pid`, and the QMP socket `qmp.sock` (private like the directory; QEMU is
started in that directory and binds it by a relative name, so a long path still fits a
socket address). On Windows, whose Python has no unix sockets, QMP is a named pipe, which
only its creator can write.

QEMU runs in a session of its own (on Windows, a detached process), so it outlives the command
that started it; a start is done when its monitor answers, and a failed one reports QEMU's
first error line (its output goes to `qemu.log`). Not `-daemonize`: the sandbox forbids the
fork that needs. On Linux QEMU runs under its seccomp sandbox (as libvirt runs it): it cannot
spawn programs, gain privileges or change resource limits, so a guest that took over QEMU
gets no further.

Saving is a migration into a file hostrt opened and hands over by descriptor (stop, migrate,
quit); restoring starts the same command line with `-incoming` from a descriptor of that file.
Port forwards are HMP `hostfwd_add`/`hostfwd_remove` through QMP's `human-monitor-command`,
exactly what the libvirt driver sends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from backends.lightvm.drivers.qemu_command import QemuLaunch, QemuShare, qemu_argv
from backends.lightvm.drivers.qmp import Qmp, QmpError
from hostrt.pids import pid_alive

if TYPE_CHECKING:
    from backends.lightvm.domain import BootFiles, SharedDir
    from backends.lightvm.machine_dir import MachineDir
    from backends.lightvm.settings import MachineSettings, VirtType

QMP_SOCKET = "qmp.sock"
START_TIMEOUT = 60.0
MIGRATION_TIMEOUT = 300.0
WINDOWS = sys.platform == "win32"


def _files(machine: MachineDir) -> tuple[Path, Path]:
    return machine.path / "qemu.json", machine.path / "qemu.pid"


def _qmp_chardev(machine: MachineDir) -> str:
    if WINDOWS:
        return f"pipe:hostrt-{machine.path.parent.name}-{machine.name}-{os.getpid()}"
    return f"unix:{QMP_SOCKET}"


class QemuDriver:
    """Machines as QEMU processes hostrt started."""

    name = "qemu"

    def __init__(self, root: Path) -> None:
        from backends.lightvm.libvirt_conn import domain_prefix

        self.prefix = domain_prefix(root)  # QEMU's -name, as the libvirt driver names the same machine

    # -- starting ------------------------------------------------------------------------
    def boot(self, machine: MachineDir, settings: MachineSettings, boot: BootFiles, virt_type: VirtType,
             ssh_port: int, shares: tuple[SharedDir, ...]) -> None:
        from hostrt.platform import detect_host

        launch = QemuLaunch(
            host_os=detect_host().os, emulator=str(boot.emulator), name=self.prefix + machine.name,
            guest_arch=settings.arch, virt_type=virt_type, memory_mib=settings.memory_mib, cpus=settings.cpus, kernel=str(boot.kernel), initrd=str(boot.initrd),
            console_log=str(boot.console_log), ssh_port=ssh_port, qmp=_qmp_chardev(machine),
            shares=tuple(QemuShare(str(s.source), s.tag, s.readonly) for s in shares))
        argv = qemu_argv(launch)
        from backends.lightvm.machine_dir import write_atomic

        write_atomic(_files(machine)[0], json.dumps({"argv": argv, "qmp": launch.qmp}).encode())
        self._launch(machine, argv)

    def _launch(self, machine: MachineDir, argv: list[str], pass_fds: tuple[int, ...] = ()) -> None:
        """Start QEMU in a session of its own (a detached process on Windows), its output in
        qemu.log, and wait until its monitor answers; QEMU's own first error line if it exits."""
        from backends.lightvm.machines import MachineError

        self._forget(machine)
        detach = ({"creationflags": getattr(subprocess, "DETACHED_PROCESS", 0)
                   | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)} if WINDOWS
                  else {"start_new_session": True, "pass_fds": pass_fds})
        log_path = machine.path / "qemu.log"
        with open(log_path, "wb") as log:
            try:
                process = subprocess.Popen(argv, cwd=machine.path, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           **detach)  # type: ignore[call-overload]
            except OSError as err:
                raise MachineError(f"machine {machine.name} failed to start: {err}") from None
        _files(machine)[1].write_text(f"{process.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                lines = log_path.read_text(errors="replace").strip().splitlines()
                raise MachineError(f"machine {machine.name} failed to start: "
                                   f"{lines[0] if lines else f'exit {process.returncode}'}")
            if self.alive(machine):
                return
            time.sleep(0.05)
        self.destroy(machine)
        raise MachineError(f"machine {machine.name} failed to start: QEMU's monitor did not answer")

    # -- QMP -----------------------------------------------------------------------------
    def _qmp(self, machine: MachineDir, timeout: float = 10.0) -> Qmp:
        config, _ = _files(machine)
        try:
            chardev = json.loads(config.read_text())["qmp"]
        except (OSError, ValueError, KeyError):
            raise QmpError(f"machine {machine.name} has no QEMU started by this driver") from None
        kind, _, where = chardev.partition(":")
        if kind == "pipe":
            return Qmp(rf"\\.\pipe\{where}", timeout, pipe=True)
        return Qmp(str(machine.path / where), timeout)

    def _pid(self, machine: MachineDir) -> int | None:
        try:
            return int(_files(machine)[1].read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def alive(self, machine: MachineDir) -> bool:
        pid = self._pid(machine)
        if pid is None or not _pid_alive(pid):
            return False
        try:
            with self._qmp(machine, timeout=5.0) as qmp:
                return qmp.execute("query-status").get("status") != "shutdown"
        except QmpError:
            return False

    def monitor(self, machine: MachineDir, command: str) -> str:
        from backends.lightvm.ports import PortForwardError

        try:
            with self._qmp(machine) as qmp:
                return qmp.hmp(command)
        except QmpError as err:
            raise PortForwardError(f"cannot reach the monitor of machine {machine.name}: {err}") from None

    # -- stopping ------------------------------------------------------------------------
    def destroy(self, machine: MachineDir) -> None:
        pid = self._pid(machine)
        try:
            with self._qmp(machine, timeout=5.0) as qmp:
                qmp.execute("quit")
        except (QmpError, OSError):
            pass  # not answering: killed below
        if pid is not None and not self._gone(pid, 10.0) and _is_our_qemu(pid, machine):
            _kill(pid)
            self._gone(pid, 10.0)
        self._forget(machine)

    def _gone(self, pid: int, within: float) -> bool:
        deadline = time.monotonic() + within
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _forget(self, machine: MachineDir) -> None:
        _files(machine)[1].unlink(missing_ok=True)
        (machine.path / QMP_SOCKET).unlink(missing_ok=True)

    # -- save and restore ----------------------------------------------------------------
    def save(self, machine: MachineDir) -> bool:
        """Pause the guest, migrate it into the machine's state file (created private first: it
        holds the guest's RAM, keys included), then end QEMU."""
        pid = self._pid(machine)
        state = machine.saved_state
        state.unlink(missing_ok=True)
        fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with self._qmp(machine, timeout=30.0) as qmp:
                qmp.execute("stop")
                if WINDOWS:
                    qmp.execute("migrate", uri=f"file:{state}")  # QEMU 8.2+; no descriptors over a pipe
                else:  # QEMU writes the file hostrt opened: its sandbox lets it open and spawn nothing
                    qmp.execute_with_fd("getfd", fd, fdname="saved-state")
                    qmp.execute("migrate", uri="fd:saved-state")
                status = _wait_migration(qmp)
                if status != "completed":
                    qmp.execute("cont")
                    return False
                qmp.execute("quit")
        except (QmpError, OSError):
            return False
        finally:
            os.close(fd)
        if pid is not None:
            self._gone(pid, 30.0)
        self._forget(machine)
        return True

    def restore(self, machine: MachineDir) -> bool:
        from backends.lightvm.machines import MachineError

        try:
            argv = json.loads(_files(machine)[0].read_text())["argv"]
            if WINDOWS:
                self._launch(machine, [*argv, "-incoming", f"file:{machine.saved_state}"])
            else:
                fd = os.open(machine.saved_state, os.O_RDONLY)
                try:
                    self._launch(machine, [*argv, "-incoming", f"fd:{fd}"], pass_fds=(fd,))
                finally:
                    os.close(fd)
        except (OSError, ValueError, KeyError, MachineError):
            return False
        deadline = time.monotonic() + MIGRATION_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with self._qmp(machine) as qmp:
                    status = qmp.execute("query-status").get("status")
                    if status == "paused" and qmp.execute("query-migrate").get("status") == "completed":
                        qmp.execute("cont")  # the guest was paused when saved, and comes back paused
                        return True
            except QmpError:
                status = None
            if status == "running":
                return True
            if status is None and not self.alive(machine):
                return False  # the incoming migration failed: QEMU exited
            time.sleep(0.05)
        self.destroy(machine)
        return False

    def describe(self, machine: MachineDir) -> dict[str, str]:
        found: dict[str, str] = {"driver": self.name, "domain": self.prefix + machine.name}
        pid = self._pid(machine)
        if pid is not None:
            found["pid"] = str(pid)
        try:
            found["qmp"] = json.loads(_files(machine)[0].read_text())["qmp"]
        except (OSError, ValueError, KeyError):
            pass
        return found

    def orphans(self) -> list[str]:
        return []  # a QEMU outlives its directory only if that was deleted by hand; nothing names it


def _wait_migration(qmp: Qmp) -> str:
    deadline = time.monotonic() + MIGRATION_TIMEOUT
    while time.monotonic() < deadline:
        status = qmp.execute("query-migrate").get("status", "none")
        if status in ("completed", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    qmp.execute("migrate_cancel")
    return "timeout"


def _pid_alive(pid: int) -> bool:
    """Whether QEMU `pid` runs; one this process started and that exited is collected first."""
    if hasattr(os, "WNOHANG"):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return pid_alive(pid)


def _is_our_qemu(pid: int, machine: MachineDir) -> bool:
    """Whether `pid` still is this machine's QEMU (and not a process that reused its number)."""
    from backends.lightvm.drivers.qemu_command import option_value

    marker = f"path={option_value(str(machine.console_log))}"
    try:
        if sys.platform.startswith("linux"):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            return marker in command
        if WINDOWS:
            return True  # the pid file is QEMU's own, written by this driver; Windows reuses pids slowly
        command = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True).stdout
        return marker in command
    except OSError:
        return False


def _kill(pid: int) -> None:
    import signal

    try:
        os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    except OSError:
        pass

