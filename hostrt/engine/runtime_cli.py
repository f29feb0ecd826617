"""Calls to a runc-compatible runtime binary (hostrt-runtime by default, runc or crun work too).

Standard library only: the monitor daemon uses it, and it must stay small.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hostrt.errors import HostrtError


class RuntimeCallError(HostrtError):
    """The runtime refused a command; the message is its last error line."""


def default_runtime() -> str:
    """`HOSTRT_RUNTIME` if set, else the hostrt-runtime installed beside this Python."""
    chosen = os.environ.get("HOSTRT_RUNTIME")
    if chosen:
        return chosen
    beside = Path(sys.executable).with_name("hostrt-runtime")
    if beside.exists():
        return str(beside)
    return shutil.which("hostrt-runtime") or "hostrt-runtime"


_IN_PROCESS = ("create", "start", "delete", "kill")  # small outputs, on every container's path


def _fd(stream: IO[Any] | int) -> int:
    return stream if isinstance(stream, int) else stream.fileno()


@dataclass(frozen=True)
class Runtime:
    """One runtime binary and its state directory (`--root`). `in_process`: run hostrt-runtime's
    create/start/delete in a forked child of this (pre-loaded) process, see runtime_fork.py."""

    binary: str
    root: Path
    in_process: bool = False

    @classmethod
    def local(cls, root: Path, binary: str | None = None) -> "Runtime":
        """The runtime a hostrt command uses: in-process whenever it is hostrt's own."""
        from hostrt.engine import runtime_fork

        binary = binary or default_runtime()
        return cls(binary, root, runtime_fork.is_own_runtime(binary))

    def _fork(self, command: str) -> bool:
        if not self.in_process:
            return False
        from hostrt.engine import runtime_fork

        return runtime_fork.usable(command)

    def _exec_args(self, command: str, argv: list[str]) -> tuple[list[str], dict]:
        if not self.in_process:
            return argv, {}
        from hostrt.engine import runtime_fork

        return runtime_fork.exec_args(command, argv)

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def call(self, *args: str, stdin: Any = subprocess.DEVNULL, stdout: Any = subprocess.PIPE,
             stderr: Any = subprocess.PIPE, check: bool = True, timeout: float | None = 60) -> subprocess.CompletedProcess[bytes]:
        if args[0] in _IN_PROCESS and (stdin, stdout, stderr) == (
                subprocess.DEVNULL, subprocess.PIPE, subprocess.PIPE) and self._fork(args[0]):
            from hostrt.engine import runtime_fork

            code, out, err = runtime_fork.run_captured(self._argv(*args)[1:])
            done = subprocess.CompletedProcess(self._argv(*args), code, out, err)
        else:
            argv, extra = self._exec_args(args[0], self._argv(*args))
            done = subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=stderr, timeout=timeout, close_fds=True, **extra)
        if check and done.returncode != 0:
            raise RuntimeCallError(_last_error(done.stderr) or f"{Path(self.binary).name} {args[0]} exited {done.returncode}")
        return done

    def create(self, container_id: str, bundle: Path, pid_file: Path, stdin: IO[Any] | int,
               stdout: IO[Any] | int, stderr: IO[Any] | int, console_socket: Path | None = None) -> int:
        """Create the container with the given stdio; returns its init's pid (read from the pid file)."""
        return self._spawn(["create"], container_id, bundle, pid_file, stdin, stdout, stderr, console_socket)

    def run_detached(self, container_id: str, bundle: Path, pid_file: Path, stdin: IO[Any] | int,
                     stdout: IO[Any] | int, stderr: IO[Any] | int) -> int:
        """Create and start in one runtime call (`run --detach`: one fork or process instead of
        two), for a caller with nothing to do in between; returns the init's pid."""
        return self._spawn(["run", "--detach"], container_id, bundle, pid_file, stdin, stdout, stderr, None)

    def _spawn(self, verb: list[str], container_id: str, bundle: Path, pid_file: Path, stdin: IO[Any] | int,
               stdout: IO[Any] | int, stderr: IO[Any] | int, console_socket: Path | None) -> int:
        args = [*verb, "--bundle", str(bundle), "--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        # The runtime's own errors go to a pipe; the container inherits stdout/stderr.
        log = pid_file.with_name("runtime-create.log")
        argv = self._argv("--log", str(log), "--log-format", "json", *args, container_id)
        if self._fork(verb[0]):
            from hostrt.engine import runtime_fork

            returncode = runtime_fork.run(argv[1:], _fd(stdin), _fd(stdout), _fd(stderr))
        else:
            argv, extra = self._exec_args(verb[0], argv)
            returncode = subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=stderr, close_fds=True, **extra).returncode
        if returncode != 0:
            raise RuntimeCallError(_last_log_error(log) or f"runtime {verb[0]} exited {returncode}")
        return int(pid_file.read_text().strip())

    def start(self, container_id: str) -> None:
        self.call("start", container_id)

    def kill(self, container_id: str, signal: str, all_processes: bool = False) -> None:
        self.call("kill", *(["--all"] if all_processes else []), container_id, signal)

    def has_state(self, container_id: str) -> bool:
        """Whether the runtime keeps state for the id: runc, crun and hostrt-runtime all keep
        `<root>/<id>`, so a missing directory means there is nothing to delete."""
        return (self.root / container_id).exists()

    def delete(self, container_id: str, force: bool = False) -> None:
        # A runtime process costs tens of milliseconds; a fresh or already deleted container needs none.
        if self.has_state(container_id):
            self.call("delete", *(["--force"] if force else []), container_id, check=False)

    def state(self, container_id: str) -> dict[str, Any] | None:
        done = self.call("state", container_id, check=False)
        if done.returncode != 0:
            return None
        return json.loads(done.stdout)


def _last_error(stderr: bytes | None) -> str:
    lines = [line.strip() for line in (stderr or b"").decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return ""
    try:
        return str(json.loads(lines[-1]).get("msg", lines[-1]))
    except ValueError:
        return lines[-1]


def _last_log_error(log: Path) -> str:
    try:
        return _last_error(log.read_bytes())
    except OSError:
        return ""
