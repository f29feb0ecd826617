"""Reach the monitor daemon of this process's context, starting it first if it is not running
(once, under a lock).

A monitor creates containers and serves their ports in its own namespaces, root directory
and cgroups: a command from another mount or network namespace, chroot or cgroup (`ip netns
exec`, `unshare`, `systemd-run --scope`) has a monitor of its own, named by its context's key.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from hostrt.engine import failpoints
from hostrt.engine.runtime_cli import Runtime
from hostrt.errors import HostrtError
from hostrt.locks import file_lock
from hostrt.paths import Paths



def socket_path(paths: Paths) -> Path:
    """The socket of the monitor of this process's context."""
    from hostrt import context

    return paths.run / f"monitor-{context.key()}.sock"


def _send(path: Path, request: dict, timeout: float, lock_fd: int | None = None) -> dict:
    """One request and its reply; `lock_fd` (a container's lock) goes with the request's first bytes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        failpoints.reached("monitor-connected")
        data = json.dumps(request).encode() + b"\n"
        sent = socket.send_fds(conn, [data], [lock_fd]) if lock_fd is not None else 0
        if sent < len(data):  # never an empty send: the monitor may have answered and hung up already (EPIPE)
            conn.sendall(data[sent:])
        failpoints.reached("monitor-request-sent")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionResetError("the monitor closed the connection")
            data += chunk
    return json.loads(data)


def _spawn(paths: Paths, runtime: Runtime, sock: Path) -> None:
    paths.run.mkdir(mode=0o700, parents=True, exist_ok=True)
    with file_lock(sock.with_suffix(".lock")):
        try:
            _send(sock, {"op": "ping"}, 2)
            return  # another hostrt started it meanwhile
        except OSError:
            pass
        log = open(paths.run / "monitor.log", "ab")
        with log:
            monitor = subprocess.Popen(
                [sys.executable, "-m", "hostrt.engine.monitor", "--socket", str(sock), "--runtime", runtime.binary,
                 "--runtime-root", str(runtime.root), "--log", str(paths.run / "monitor.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True, close_fds=True)
        assert monitor.stdout is not None
        line = monitor.stdout.readline()
        monitor.stdout.close()
        if line.strip() != b"ready":
            raise HostrtError(f"the container monitor failed to start (see {paths.run / 'monitor.log'})")


def ask_monitor(paths: Paths, runtime: Runtime, request: dict, timeout: float = 60, lock_fd: int | None = None) -> dict:
    """Send one request; a missing or exiting monitor is (re)started and asked again once."""
    sock = socket_path(paths)
    for attempt in range(2):
        try:
            return _send(sock, request, timeout, lock_fd)
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
            if attempt == 1:
                raise
            _spawn(paths, runtime, sock)
    raise AssertionError("unreachable")


def ensure_monitor(paths: Paths, runtime: Runtime) -> None:
    """Restart a monitor that died (SIGKILL, OOM) while it served published ports: the new one
    takes them over (hostrt.network.takeover). Costs one ping when it is alive."""
    sock = socket_path(paths)
    try:
        _send(sock, {"op": "ping"}, 10)
    except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
        _spawn(paths, runtime, sock)
