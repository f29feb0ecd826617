"""A minimal QMP client: the JSON machine protocol of a QEMU the QEMU driver started.

One conversation per connection (greeting, `qmp_capabilities`, commands), kept short: QEMU
serves one QMP client at a time, so a second hostrt command waits until the first hangs up.
Asynchronous events that arrive between replies are skipped.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

from hostrt.errors import HostrtError

TIMEOUT = 10.0


class QmpError(HostrtError):
    """QEMU answered a command with an error, or could not be reached."""


SUN_PATH_MAX = 100  # below every OS's sockaddr_un limit (104 on macOS, 108 on Linux)


class Qmp:
    """An open QMP session on a unix socket `path`, or on a Windows named pipe (`pipe`)."""

    def __init__(self, path: str, timeout: float = TIMEOUT, pipe: bool = False) -> None:
        self._sock: socket.socket | None = None
        try:
            if pipe:
                self._file: Any = open(path, "r+b", buffering=0)  # noqa: SIM115 - closed by close()
            else:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # type: ignore[attr-defined]
                self._sock.settimeout(timeout)
                _connect(self._sock, path)
                self._file = self._sock.makefile("rwb")
            self._read()  # the greeting
            self.execute("qmp_capabilities")
        except (OSError, ValueError) as err:
            self.close()
            raise QmpError(f"QEMU's monitor at {path} does not answer: {err}") from None

    def __enter__(self) -> "Qmp":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._file.close()
        except (OSError, AttributeError):
            pass
        if self._sock is not None:
            self._sock.close()

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise ConnectionError("QEMU closed its monitor")
        return json.loads(line)

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run one command; its `return` value, or QmpError with QEMU's description."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._file.write(json.dumps(request).encode() + b"\n")
        self._file.flush()
        return self._reply(command)

    def execute_with_fd(self, command: str, fd: int, **arguments: Any) -> Any:
        """A command that takes a descriptor along (SCM_RIGHTS on the unix socket), e.g. `getfd`:
        QEMU then writes a file hostrt opened, and needs no way to open or spawn anything itself."""
        assert self._sock is not None, "descriptors pass over unix sockets only"
        request = json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n"
        socket.send_fds(self._sock, [request], [fd])
        return self._reply(command)

    def _reply(self, command: str) -> Any:
        """The answer to the command just sent, past any events QEMU sent meanwhile."""
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QmpError(f"QEMU refused {command}: {reply['error'].get('desc', reply['error'])}")

    def hmp(self, command: str) -> str:
        """A human-monitor command (what libvirt's qemuMonitorCommand sends); its text output."""
        return str(self.execute("human-monitor-command", **{"command-line": command})).strip()


def _connect(sock: socket.socket, path: str) -> None:
    """Connect to a socket whose path may be longer than sockaddr_un allows: Linux reaches it
    through a descriptor of its directory (QEMU bound it by a relative name)."""
    if len(os.fsencode(path)) < SUN_PATH_MAX or not sys.platform.startswith("linux"):
        sock.connect(path)
        return
    directory, name = os.path.split(path)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{fd}/{name}")
    finally:
        os.close(fd)
