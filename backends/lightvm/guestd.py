"""The resident guest daemon: guest operations served by one Python that imported them once.

Under TCG an interpreter start in the guest costs ~0.3 s, and a `run` used to start about
nine (one per operation, more for the runtime calls inside them). This daemon imports the
guest operations and the runtime once; each request is served in a fork of it, and the
runtime is called in a fork too (`hostrt/engine/runtime_fork.py`): an operation costs forks,
not interpreter starts.

It listens on 127.0.0.1 inside the guest; the host reaches it through an SSH `direct-tcpip`
channel of the host agent's connection. Every request carries a random token that only root
in the guest can read (containers have their own root and cannot), so a process in the guest
that can reach the port still cannot ask for anything.

Protocol (the host agent's frames, so that the agent relays bytes unchanged):
  request:  one JSON line {"token", "op", "args"}, then stdin bytes; half-close = stdin EOF
  response: frames of 1 type byte + 4-byte length: b"o" stdout, b"e" stderr, b"r" the
            operation's result (what it wrote on fd 3: `run` reports the container's end
            there, so that the host needs no `state` request after it), b"x" exit status

`python3 -m backends.lightvm.guestd` prints "PORT TOKEN" of the daemon serving this code
version, starting it first if none is alive. The guest's /init runs it at boot for the code
the machine booted with; the host agent then reads "PORT TOKEN PID" from `VERSION.addr` with
the shell (an interpreter start costs ~0.3 s under TCG) and runs this only when that daemon
is gone.
"""

from __future__ import annotations

import errno
import fcntl
import hmac
import json
import os
import secrets
import select
import socket
import struct
import sys
from pathlib import Path

STATE_DIR = Path(os.environ.get("HOSTRT_GUESTD_STATE", "/run/hostrt-guestd"))
CODE = Path(__file__).resolve().parents[2]  # the shipped tree: one directory per code version
_FRAME = struct.Struct("!cI")
_HEADER_LIMIT = 1 << 20
MODULES_LOADING = Path("/run/hostrt-modules-loading")  # see images/guest/rootfs/init


def _state_file() -> Path:
    """One daemon per shipped code version: the version is this tree's directory name."""
    return STATE_DIR / f"{CODE.name}.json"


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.rename(tmp, path)


def _alive(state: dict) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", state["port"]), timeout=2):
            pass
        os.kill(state["pid"], 0)
        return True
    except (OSError, KeyError, TypeError):
        return False


def preload() -> None:
    """Import the guest operations and every runtime module, so that forks find them loaded
    (the runtime imports lazily, per command, to start fast as a process of its own)."""
    import importlib

    import backends.lightvm.guest_agent  # noqa: F401
    import hostrt.engine.console  # noqa: F401
    import hostrt.engine.monitor_client  # noqa: F401
    import hostrt.engine.runtime_fork  # noqa: F401
    import hostrt.engine.snapshot  # noqa: F401
    import hostrt.engine.supervise  # noqa: F401
    import hostrt.images.unpack  # noqa: F401
    import hostrt.network.proxy  # noqa: F401 - every attached `run` serves its published ports with it

    runtime = CODE / "backends" / "linux_native"
    for path in sorted(runtime.rglob("*.py")):
        parts = path.relative_to(CODE).with_suffix("").parts
        importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    hostrt.engine.runtime_fork.preload()


def _send(conn: socket.socket, kind: bytes, payload: bytes) -> None:
    conn.sendall(_FRAME.pack(kind, len(payload)) + payload)


def _read_header(conn: socket.socket) -> tuple[dict, bytes]:
    """The request line, and the stdin bytes that arrived with it."""
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(65536)
        if not chunk or len(data) > _HEADER_LIMIT:
            raise ConnectionError("no request")
        data += chunk
    line, rest = data.split(b"\n", 1)
    return json.loads(line), rest


def _run_operation(op: str, args: list[str], stdin_r: int, stdout_w: int, stderr_w: int, result_w: int) -> None:
    """In the grandchild: stdio (and fd 3, the result) onto the pipes, run the operation, leave with its code."""
    code = 1
    try:
        pipes = (stdin_r, stdout_w, stderr_w, result_w)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in pipes]  # above 3: no target is overwritten first
        for fd in pipes:
            os.close(fd)
        for target, fd in enumerate(high):
            os.dup2(fd, target)
            os.close(fd)
        from backends.lightvm import guest_agent

        guest_agent.RESULT_FD = 3
        code = guest_agent.main([op, *args])
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve(conn: socket.socket, token: str) -> None:
    """In the per-request child: check the token, run the operation, relay its stdio as frames."""
    request, pending = _read_header(conn)
    if not hmac.compare_digest(str(request.get("token", "")), token):
        return
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - leaves through os._exit
        conn.close()
        for fd in (stdin_w, stdout_r, stderr_r, result_r):
            os.close(fd)
        _run_operation(str(request["op"]), [str(a) for a in request.get("args", [])], stdin_r, stdout_w, stderr_w,
                       result_w)
    for fd in (stdin_r, stdout_w, stderr_w, result_w):
        os.close(fd)
    _relay(conn, pid, pending, stdin_w, {stdout_r: b"o", stderr_r: b"e", result_r: b"r"})


def _relay(conn: socket.socket, pid: int, pending: bytes, stdin_w: int | None, outputs: dict[int, bytes]) -> None:
    """Client bytes -> the operation's stdin; its stdout/stderr -> frames; then its exit status.

    Output is relayed until the operation has exited and its pipes are drained: a process it
    left behind holding a pipe (a detached container never does) cannot hold the reply back."""
    pidfd = os.pidfd_open(pid)
    if stdin_w is not None:
        os.set_blocking(stdin_w, False)
    client_open = True
    exited = False
    while outputs:
        readers = list(outputs) + ([conn] if client_open and not pending else []) + ([] if exited else [pidfd])
        writers = [stdin_w] if pending and stdin_w is not None else []
        ready, writable, _ = select.select(readers, writers, [], 0.2 if exited else None)
        if exited and not ready and not writable:
            break  # exited, and nothing more came
        for fd in ready:
            if fd is conn:
                chunk = conn.recv(65536)
                if chunk:
                    pending += chunk
                else:
                    client_open = False
            elif fd == pidfd:
                exited = True
            else:
                chunk = os.read(fd, 65536)
                if chunk:
                    _send(conn, outputs[fd], chunk)
                else:
                    os.close(fd)
                    del outputs[fd]
        if writable and stdin_w is not None:
            try:
                pending = pending[os.write(stdin_w, pending):]
            except OSError as exc:
                if exc.errno != errno.EAGAIN:  # the operation closed its stdin: drop the rest
                    pending, client_open = b"", False
        if stdin_w is not None and not pending and not client_open:
            os.close(stdin_w)
            stdin_w = None
    for fd in outputs:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    os.close(pidfd)
    _send(conn, b"x", struct.pack("!i", os.waitstatus_to_exitcode(status)))


def serve(listener: socket.socket, token: str) -> None:
    """Accept forever; one forked child per request; reap children as they end."""
    while True:
        try:
            conn, _ = listener.accept()
        except InterruptedError:
            continue
        pid = os.fork()
        if pid == 0:  # pragma: no cover - leaves through os._exit
            listener.close()
            code = 0
            try:
                _serve(conn, token)
            except Exception:  # noqa: BLE001 - one bad request must not reach the daemon
                code = 1
            finally:
                os._exit(code)
        conn.close()
        while True:
            try:
                reaped, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if reaped == 0:
                break


def main() -> int:
    from backends.linux_native import sealed_exe

    sealed_exe.reexec()  # the daemon forked below runs the runtime in forks (runtime_fork.usable)
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    with open(STATE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state_file = _state_file()
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = {}
        if not _alive(state):
            state = _start()
            _write_private(state_file, json.dumps(state))
            _write_private(state_file.with_suffix(".addr"), f"{state['port']} {state['token']} {state['pid']}\n")
    print(state["port"], state["token"], flush=True)
    return 0


def _wait_for_modules(limit: float = 60.0) -> None:
    """The guest's /init loads the modules that containers need (overlay, 9p, veth, bridge) after
    SSH is up, in the background, and removes this marker when done: operations wait for them."""
    import time

    deadline = time.monotonic() + limit
    while MODULES_LOADING.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _close_fds_except(keep: set[int]) -> None:
    for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _start() -> dict:
    """Fork the daemon (detached from the SSH session), listening before we report its port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    token = secrets.token_hex(32)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the daemon never returns
        os.close(read_end)
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        _close_fds_except({0, 1, 2, listener.fileno(), write_end})  # above all the lock's: it must not stay held
        os.chdir(CODE)  # what the operations spawn with `python3 -m` (the monitor) imports from here
        preload()
        _wait_for_modules()  # imported meanwhile: the daemon reports ready once operations can run
        os.write(write_end, str(os.getpid()).encode())
        os.close(write_end)
        try:
            serve(listener, token)
        finally:
            os._exit(1)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as ready:
        daemon_pid = int(ready.read() or b"0")
    listener.close()
    if not daemon_pid:
        raise SystemExit("guestd: the daemon did not start")
    return {"port": port, "token": token, "pid": daemon_pid}


if __name__ == "__main__":
    sys.exit(main())
