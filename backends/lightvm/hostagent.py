"""The host agent: one long-lived SSH connection per running machine, shared by every hostrt
command through a unix socket in the machine's directory (as Lima's hostagent), or where a host
has no unix sockets (Windows) loopback TCP with a token (`agent_transport.py`).

A warm `run` then pays no SSH handshake (key exchange and auth cost ~190 ms with paramiko,
more than a command in the guest). Each client asks for one command; the agent opens a
channel on its connection and relays it as frames:
  client -> agent: one JSON line {"command": ...}, then stdin bytes; half-close = stdin EOF
  agent -> client: frames of 1 type byte + 4-byte length + payload:
                   b"o" stdout, b"e" stderr, b"x" exit status (4-byte signed int)
A request {"guest": {"code": DIR, "op": OP, "args": [...]}} instead runs a guest operation in
the resident guest daemon (`guestd.py`) of that shipped code: the agent starts the daemon once,
then relays each request over a `direct-tcpip` channel to it, unchanged (same frames, plus
b"r", the operation's result). Before relaying, the agent sends b"s" (started: the request
reached the daemon), or b"c" when DIR holds no shipped code; a client whose connection ends
before b"s" knows that nothing ran, so it may boot the machine or ship the code and ask again
(this is what checks a warm machine: no request of its own).
The agent exits when its connection to the guest dies; clients then fall back to SSH.
It also keeps the machine's idle clock: with no request and no running container for the
machine's `idle_timeout_s`, it stops the machine (`hostrt machine stop`), as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from backends.lightvm import agent_transport

PID_NAME = "agent.pid"
PROTOCOL_NAME = "agent.protocol"
PROTOCOL = "3"  # 2: guest operations relayed to the guest daemon; 3: b"s"/b"c" before the relay
_FRAME = struct.Struct("!cI")
GUESTD_STATE = "/run/hostrt-guestd"  # guestd.STATE_DIR in the guest
_NO_CODE = 97  # exit status of the daemon start command when the code directory is not there


def _send_frame(conn: socket.socket, kind: bytes, payload: bytes, lock: threading.Lock) -> None:
    with lock:
        conn.sendall(_FRAME.pack(kind, len(payload)) + payload)


class CodeMissing(ConnectionError):
    """The guest has no shipped code in the directory a request names."""


class NotStarted(ConnectionError):
    """The request never reached the guest (no agent, no connection to the guest): nothing ran."""


class PayloadMissing(NotStarted):
    """The guest lacks the shipped code the request names: ship it, then ask again."""


class GuestDaemons:
    """Address and token of the guest daemon serving each shipped code version, started on first use."""

    def __init__(self, transport) -> None:  # noqa: ANN001 - a paramiko Transport
        self.transport = transport
        self._known: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def address(self, code: str, fresh: bool = False) -> tuple[int, str]:
        with self._lock:
            if fresh or code not in self._known:
                self._known[code] = self._start(code, fresh)
            return self._known[code]

    def _start(self, code: str, fresh: bool) -> tuple[int, str]:
        import shlex

        quoted = shlex.quote(code)
        start = f"cd {quoted} && exec python3 -S -m backends.lightvm.guestd"
        if not fresh:  # the daemon /init started at boot (or an earlier agent's), found by the shell
            addr = shlex.quote(f"{GUESTD_STATE}/{code.rstrip('/').rsplit('/', 1)[-1]}.addr")
            start = (f"if read -r port token pid < {addr} && kill -0 \"$pid\" 2>/dev/null; "
                     f"then echo \"$port $token\"; else {start}; fi")
        # A timeout: a start that hangs is an error, not a hang of every later request.
        status, out = _exec(self.transport, f"test -f {quoted}/hostrt-runtime || exit {_NO_CODE}; {start}", 60)
        if status == _NO_CODE:
            raise CodeMissing(code)
        fields = out.split()
        if status != 0 or len(fields) != 2:
            raise ConnectionError(f"the guest daemon did not start (exit {status})")
        return int(fields[0]), fields[1].decode()


def _open_guest(daemons: GuestDaemons, request: dict):  # noqa: ANN202 - a paramiko Channel
    """A channel to the guest daemon with the request line sent; restarts a daemon found dead."""
    for fresh in (False, True):
        port, token = daemons.address(request["code"], fresh)
        try:
            channel = daemons.transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0))
        except Exception:  # noqa: BLE001 - paramiko's ChannelException: the port is closed
            if fresh:
                raise
            continue
        line = {"token": token, "op": request["op"], "args": request.get("args", [])}
        channel.sendall(json.dumps(line).encode() + b"\n")
        return channel
    raise AssertionError("unreachable")


def _relay_guest(conn: socket.socket, reader, daemons: GuestDaemons, request: dict) -> None:  # noqa: ANN001
    """Bytes both ways between the client and the guest daemon: they speak the same frames."""
    try:
        channel = _open_guest(daemons, request)
    except CodeMissing:
        conn.sendall(_FRAME.pack(b"c", 0))
        return
    conn.sendall(_FRAME.pack(b"s", 0))

    def pump_stdin() -> None:
        try:
            while data := reader.read1(65536):
                channel.sendall(data)
            channel.shutdown_write()
        except OSError:
            pass

    threading.Thread(target=pump_stdin, daemon=True).start()
    try:
        while data := channel.recv(65536):
            conn.sendall(data)
    finally:
        channel.close()  # also when the client went away: the guest side then sees the channel end


class IdleClock:
    """When the machine was last used: requests in flight count as use until they end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0
        self._since = time.monotonic()

    def __enter__(self) -> None:
        with self._lock:
            self._busy += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._busy -= 1
            self._since = time.monotonic()

    def idle_for(self) -> float:
        with self._lock:
            return 0.0 if self._busy else time.monotonic() - self._since


def _exec(transport, command: str, timeout: float) -> tuple[int, bytes]:  # noqa: ANN001 - a paramiko Transport
    """Run a short guest command on a new channel of the shared connection: (status, stdout)."""
    channel = transport.open_session()
    try:
        channel.settimeout(timeout)
        channel.exec_command(command)
        out = channel.makefile("rb").read()
        return channel.recv_exit_status(), out
    finally:
        channel.close()


def _has_running_containers(transport) -> bool:  # noqa: ANN001 - a paramiko Transport
    from backends.lightvm.suspend import RUNNING_CONTAINERS

    return bool(_exec(transport, RUNNING_CONTAINERS, 30)[1].strip())


def _stop_when_idle(machine_dir: Path, transport, clock: IdleClock, timeout: float) -> None:  # noqa: ANN001
    """Stop the machine once it has been idle for `timeout` s with no container running."""
    import subprocess

    while transport.is_active():
        time.sleep(min(30.0, max(1.0, timeout / 4)))
        try:
            if clock.idle_for() < timeout or _has_running_containers(transport):
                continue
        except Exception:  # noqa: BLE001 - the guest is going away: the accept loop notices
            continue
        env = {**os.environ, "HOSTRT_ROOT": str(machine_dir.parent.parent)}
        subprocess.Popen([sys.executable, "-m", "hostrt", "machine", "stop", machine_dir.name], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        return


def _serve_one(conn: socket.socket, listener: agent_transport.Listener, transport, daemons: GuestDaemons,  # noqa: ANN001
               clock: IdleClock) -> None:
    """Run one client's command on a new channel of the shared connection."""
    lock = threading.Lock()
    with conn:
        reader = conn.makefile("rb")
        if not listener.admit(conn, reader):
            return  # a wrong or missing token: closed before the request is read
        with clock:
            _serve_request(conn, reader, lock, transport, daemons)


def _serve_request(conn: socket.socket, reader, lock: threading.Lock, transport, daemons: GuestDaemons) -> None:  # noqa: ANN001
    """One request of an admitted client."""
    request = json.loads(reader.readline())
    if "guest" in request:
        _relay_guest(conn, reader, daemons, request["guest"])
        return
    channel = transport.open_session()
    channel.exec_command(request["command"])

    def pump_stdin() -> None:
        while data := reader.read1(65536):
            channel.sendall(data)
        channel.shutdown_write()

    threading.Thread(target=pump_stdin, daemon=True).start()
    while True:
        if channel.recv_ready():
            _send_frame(conn, b"o", channel.recv(65536), lock)
        elif channel.recv_stderr_ready():
            _send_frame(conn, b"e", channel.recv_stderr(65536), lock)
        elif channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
        else:
            channel.status_event.wait(0.01)
    _send_frame(conn, b"x", struct.pack("!i", channel.recv_exit_status()), lock)
    channel.close()


def serve(machine_dir: Path) -> int:
    from backends.lightvm.machine_dir import MachineDir
    from backends.lightvm.machines import ssh_target
    from backends.lightvm.ssh import connect

    machine = MachineDir(machine_dir)
    client = connect(ssh_target(machine), timeout=10)
    transport = client.get_transport()
    transport.set_keepalive(15)
    listener = agent_transport.Listener(machine_dir, agent_transport.chosen())
    (machine_dir / PID_NAME).write_text(str(os.getpid()))
    (machine_dir / PROTOCOL_NAME).write_text(PROTOCOL)
    daemons = GuestDaemons(transport)
    clock = IdleClock()
    timeout = machine.settings().idle_timeout_s
    if timeout > 0:
        threading.Thread(target=_stop_when_idle, args=(machine_dir, transport, clock, timeout), daemon=True).start()
    print("ready", flush=True)
    try:
        while transport.is_active():
            try:
                conn = listener.accept()
            except socket.timeout:
                continue
            threading.Thread(target=_serve_one, args=(conn, listener, transport, daemons, clock), daemon=True).start()
    finally:
        listener.close()
        (machine_dir / PID_NAME).unlink(missing_ok=True)
        (machine_dir / PROTOCOL_NAME).unlink(missing_ok=True)
    return 0


def start_agent(machine_dir: Path) -> bool:
    """Start the machine's agent in the background; True once it listens."""
    import subprocess

    agent_transport.chosen()  # a bad HOSTRT_AGENT_TRANSPORT is the caller's error, said here

    agent = subprocess.Popen([sys.executable, "-m", "backends.lightvm.hostagent", str(machine_dir)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True)
    assert agent.stdout is not None
    ready = agent.stdout.readline().strip() == b"ready"
    agent.stdout.close()
    return ready


def stop_agent(machine_dir: Path) -> None:
    import signal

    try:
        os.kill(int((machine_dir / PID_NAME).read_text()), signal.SIGTERM)
    except (OSError, ValueError):
        pass
    agent_transport.remove_endpoint(machine_dir)  # the token goes with the agent
    (machine_dir / PID_NAME).unlink(missing_ok=True)
    (machine_dir / PROTOCOL_NAME).unlink(missing_ok=True)


class AgentSession:
    """A command run through the agent; the same results as an SSH exec."""

    def __init__(self, machine_dir: Path) -> None:
        self.machine_dir = machine_dir

    def available(self) -> bool:
        return agent_transport.available(self.machine_dir)

    def current(self) -> bool:
        """Whether the running agent speaks this hostrt's protocol (an older one may still run)."""
        try:
            return (self.machine_dir / PROTOCOL_NAME).read_text() == PROTOCOL
        except OSError:
            return False

    def run(self, command: str, stdin: bytes | None = None, stdout: int | None = None, stderr: int | None = None,
            stdin_fd: int | None = None) -> tuple[int, bytes, bytes]:
        """Run a shell `command`; output is collected, or written to the given fds as it arrives.
        Input is `stdin` bytes, or streamed from `stdin_fd` until its end."""
        return self._request({"command": command}, stdin, stdout, stderr, stdin_fd)

    def guest(self, code: str, op: str, *args: str, stdin: bytes | None = None, stdout: int | None = None,
              stderr: int | None = None, stdin_fd: int | None = None,
              result: bytearray | None = None) -> tuple[int, bytes, bytes]:
        """Run guest operation `op` in the resident guest daemon of the code shipped to `code`;
        what it reports as its result is added to `result`. Raises NotStarted when the request
        did not reach the guest (PayloadMissing: `code` is not there), so nothing ran."""
        return self._request({"guest": {"code": code, "op": op, "args": list(args)}}, stdin, stdout, stderr, stdin_fd,
                             result)

    def _request(self, request: dict, stdin: bytes | None, stdout: int | None, stderr: int | None,
                 stdin_fd: int | None, result: bytearray | None = None) -> tuple[int, bytes, bytes]:
        out, err = bytearray(), bytearray()
        started = "guest" not in request  # a command has no start frame
        try:
            conn = agent_transport.connect(self.machine_dir)
        except OSError as err_:
            raise NotStarted(f"the host agent is not running: {err_}") from None
        with conn:
            try:
                conn.sendall(json.dumps(request).encode() + b"\n")
            except OSError as err_:
                raise NotStarted(f"the host agent is not running: {err_}") from None
            if stdin_fd is not None:
                if started:
                    threading.Thread(target=_pump, args=(stdin_fd, conn), daemon=True).start()
            else:
                try:
                    conn.sendall(stdin or b"")
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    if started:
                        raise
                    # the agent gave up before reading it all: its frame below says why
            reader = conn.makefile("rb")
            while True:
                try:
                    header = reader.read(_FRAME.size)
                except OSError:
                    header = b""
                if len(header) < _FRAME.size:
                    if not started:
                        raise NotStarted("the host agent could not reach the guest")
                    raise ConnectionResetError("the host agent closed the connection")
                kind, length = _FRAME.unpack(header)
                payload = reader.read(length)
                if kind == b"x":
                    return struct.unpack("!i", payload)[0], bytes(out), bytes(err)
                if kind == b"s":
                    started = True
                    if stdin_fd is not None:  # only now: a request that did not start consumed none of it
                        threading.Thread(target=_pump, args=(stdin_fd, conn), daemon=True).start()
                    continue
                if kind == b"c":
                    raise PayloadMissing(f"no shipped code at {request['guest']['code']}")
                if kind == b"r":
                    if result is not None:
                        result.extend(payload)
                    continue
                target, buffer = (stdout, out) if kind == b"o" else (stderr, err)
                if target is not None:
                    os.write(target, payload)
                else:
                    buffer.extend(payload)


def _pump(fd: int, conn: socket.socket) -> None:
    try:
        while data := os.read(fd, 65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the command ended first


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="hostrt-hostagent")
    parser.add_argument("machine_dir", type=Path)
    sys.exit(serve(parser.parse_args().machine_dir))
