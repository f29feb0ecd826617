"""The host agent's two transports on real sockets: the unix socket, and loopback TCP with a
token (what a host without AF_UNIX uses). Machines run these through the agent in
test_agent_tcp.py; here the listener itself: who is admitted, where it listens, which files it
leaves."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from tests.support.sockets import listeners

from backends.lightvm import agent_transport
from backends.lightvm.agent_transport import ENDPOINT_NAME, SOCKET_NAME, Listener


@pytest.fixture
def machine_dir(tmp_path: Path) -> Path:
    path = tmp_path / "machine"
    path.mkdir(mode=0o700)
    return path


def _serve_once(listener: Listener) -> dict:
    """Accept one connection in a thread; report whether it was admitted and what it sent next."""
    seen: dict = {}

    def serve() -> None:
        conn = listener.accept()
        with conn:
            reader = conn.makefile("rb")
            seen["admitted"] = listener.admit(conn, reader)
            if seen["admitted"]:
                seen["request"] = reader.readline()
                conn.sendall(b"served\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    seen["thread"] = thread
    return seen


def test_tcp_is_chosen_where_forced_and_a_bad_value_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(agent_transport.TRANSPORT_ENV, raising=False)
    assert agent_transport.chosen() == "unix"
    monkeypatch.setenv(agent_transport.TRANSPORT_ENV, "tcp")
    assert agent_transport.chosen() == "tcp"
    monkeypatch.setenv(agent_transport.TRANSPORT_ENV, "pipe")
    with pytest.raises(agent_transport.TransportError, match="must be unix or tcp"):
        agent_transport.chosen()


def test_tcp_is_chosen_where_the_host_has_no_unix_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(agent_transport.TRANSPORT_ENV, raising=False)
    monkeypatch.delattr(socket, "AF_UNIX")  # what CPython on Windows lacks
    assert agent_transport.chosen() == "tcp"
    monkeypatch.setenv(agent_transport.TRANSPORT_ENV, "unix")
    with pytest.raises(agent_transport.TransportError, match="no unix sockets"):
        agent_transport.chosen()


def test_tcp_listens_on_loopback_only_with_a_private_token_file(machine_dir: Path) -> None:
    listener = Listener(machine_dir, "tcp")
    try:
        host, port = listener.sock.getsockname()
        assert host == "127.0.0.1"
        assert listeners(port) == ["127.0.0.1"]
        endpoint = machine_dir / ENDPOINT_NAME
        assert stat.S_IMODE(endpoint.stat().st_mode) == 0o600
        assert endpoint.stat().st_uid == os.geteuid()
        written_port, token = endpoint.read_text().split()
        assert int(written_port) == port and len(token) == 64 and int(token, 16) >= 0
        assert not (machine_dir / SOCKET_NAME).exists()
        assert sorted(p.name for p in machine_dir.iterdir()) == [ENDPOINT_NAME], "no temporary file left"
    finally:
        listener.close()
    assert list(machine_dir.iterdir()) == [], "the token file goes with the listener"
    assert listeners(port) == []


def test_each_listener_has_its_own_token(machine_dir: Path) -> None:
    tokens = []
    for _ in range(2):
        listener = Listener(machine_dir, "tcp")
        tokens.append((machine_dir / ENDPOINT_NAME).read_text().split()[1])
        listener.close()
    assert tokens[0] != tokens[1]


def test_the_right_token_is_admitted(machine_dir: Path) -> None:
    listener = Listener(machine_dir, "tcp")
    try:
        seen = _serve_once(listener)
        with agent_transport.connect(machine_dir) as conn:
            conn.sendall(b'{"command": "true"}\n')
            assert conn.makefile("rb").readline() == b"served\n"
        seen["thread"].join(10)
        assert seen["admitted"] is True and seen["request"] == b'{"command": "true"}\n'
    finally:
        listener.close()


@pytest.mark.parametrize("first", [
    pytest.param(b"0" * 64 + b"\n", id="wrong-token"),
    pytest.param(b'{"command": "touch /tmp/x"}\n', id="no-token"),
    pytest.param(b"", id="nothing"),
])
def test_a_wrong_or_missing_token_is_closed_before_the_request_is_read(machine_dir: Path, first: bytes) -> None:
    listener = Listener(machine_dir, "tcp")
    try:
        port = listener.sock.getsockname()[1]
        seen = _serve_once(listener)
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(first + b'{"command": "touch /tmp/x"}\n')
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(30)
            assert conn.recv(100) == b"", "the agent closes the connection without a reply"
        seen["thread"].join(10)
        assert seen["admitted"] is False and "request" not in seen
    finally:
        listener.close()


def test_a_client_that_does_not_know_the_token_is_closed_after_the_challenge(machine_dir: Path) -> None:
    """The exchange itself: a well-formed nonce gets the agent's challenge, a wrong proof gets nothing
    more, and the request after it is never read."""
    listener = Listener(machine_dir, "tcp")
    try:
        seen = _serve_once(listener)
        with socket.create_connection(("127.0.0.1", listener.sock.getsockname()[1])) as conn:
            conn.settimeout(30)
            conn.sendall(b"0" * 32 + b"\n")
            reader = conn.makefile("rb")
            agent_nonce, proof = reader.readline().split()
            assert len(agent_nonce) == 32 and len(proof) == 64
            conn.sendall(b"f" * 64 + b"\n" + b'{"command": "touch /tmp/x"}\n')
            assert reader.read() == b""
        seen["thread"].join(10)
        assert seen["admitted"] is False and "request" not in seen
    finally:
        listener.close()


def test_a_port_taken_by_something_else_gets_no_token_and_no_request(machine_dir: Path) -> None:
    """An agent that died leaves its endpoint file; whatever listens on that port later (another
    user's process) must neither learn the token nor pass for the agent."""
    token = "ab" * 32
    impostor = socket.create_server(("127.0.0.1", 0))
    (machine_dir / ENDPOINT_NAME).write_text(f"{impostor.getsockname()[1]} {token}\n")
    received = bytearray()

    def pretend() -> None:
        conn, _ = impostor.accept()
        with conn:
            conn.settimeout(10)
            received.extend(conn.recv(4096))
            conn.sendall(b"1" * 32 + b" " + b"2" * 64 + b"\n")  # a challenge it cannot make right
            try:
                while chunk := conn.recv(4096):
                    received.extend(chunk)
            except OSError:
                pass

    thread = threading.Thread(target=pretend, daemon=True)
    thread.start()
    try:
        with pytest.raises(ConnectionRefusedError, match="not its agent"):
            agent_transport.connect(machine_dir)
        thread.join(10)
        assert len(received) == 33 and token.encode() not in received, "only the client's nonce was sent"
    finally:
        impostor.close()


def test_a_silent_client_is_dropped(machine_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_transport, "TOKEN_TIMEOUT", 0.5)
    listener = Listener(machine_dir, "tcp")
    try:
        seen = _serve_once(listener)
        with socket.create_connection(("127.0.0.1", listener.sock.getsockname()[1])) as conn:
            conn.settimeout(30)
            assert conn.recv(100) == b""
        seen["thread"].join(10)
        assert seen["admitted"] is False
    finally:
        listener.close()


def test_the_unix_socket_is_0600_and_goes_with_the_listener(machine_dir: Path) -> None:
    listener = Listener(machine_dir, "unix")
    try:
        assert stat.S_IMODE((machine_dir / SOCKET_NAME).stat().st_mode) == 0o600
        assert not (machine_dir / ENDPOINT_NAME).exists()
        seen = _serve_once(listener)
        with agent_transport.connect(machine_dir) as conn:
            assert conn.family == socket.AF_UNIX
            conn.sendall(b"{}\n")
            assert conn.makefile("rb").readline() == b"served\n"
        seen["thread"].join(10)
    finally:
        listener.close()
    assert list(machine_dir.iterdir()) == []


def test_no_agent_is_a_connection_error(machine_dir: Path) -> None:
    assert not agent_transport.available(machine_dir)
    with pytest.raises(OSError):
        agent_transport.connect(machine_dir)
    (machine_dir / ENDPOINT_NAME).write_text("garbage\n")
    with pytest.raises(OSError):
        agent_transport.connect(machine_dir)
