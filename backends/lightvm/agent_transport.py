"""How hostrt commands reach a machine's host agent: a unix socket, or loopback TCP with a token.

The unix socket (`agent.sock`, mode 0600 in the machine's private directory) is the default:
the file system decides who may connect. CPython on Windows has no AF_UNIX, so there the
agent listens on TCP instead, and because any local user can connect to a TCP port:
- it binds 127.0.0.1 only, on a port the kernel picks (on Windows exclusively, so another
  process cannot bind the same port beside it);
- it writes the port and a fresh random token to `agent.tcp`, created 0600 before a byte is
  written (never readable by others, not even for a moment), and replaced by rename;
- each side proves to the other that it knows the token, without sending it: the client sends
  a nonce, the agent answers with its own nonce and an HMAC of both, the client checks it and
  answers with its HMAC of both (compared in constant time). A wrong, missing or slow proof
  closes the connection before the request is read, so nothing runs; and a process that took
  the port of an agent that died cannot pass for it (it does not know the token);
- the file goes when the agent stops, with the socket file.
`HOSTRT_AGENT_TRANSPORT=tcp` forces TCP where unix sockets exist, so that path is tested on
Linux; `unix` forces the socket. Clients follow whichever endpoint file the running agent
wrote, whatever their own environment says.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from hostrt.errors import UsageError

TRANSPORT_ENV = "HOSTRT_AGENT_TRANSPORT"
SOCKET_NAME = "agent.sock"
ENDPOINT_NAME = "agent.tcp"  # "PORT TOKEN\n"
TOKEN_BYTES = 32
TOKEN_TIMEOUT = 10.0  # a connection that does not complete its proof by then is dropped
NONCE_BYTES = 16
_NONCE_LINE = 2 * NONCE_BYTES + 1
_PROOF_LINE = 64 + 1  # an HMAC-SHA256 in hex


def _proof(token: bytes, side: bytes, first: bytes, second: bytes) -> bytes:
    """What `side` (b"agent" or b"client") sends to show it knows `token`, bound to both nonces."""
    import hmac

    return hmac.new(token, b"%s:%s:%s" % (side, first, second), "sha256").hexdigest().encode()


class TransportError(UsageError):
    """The transport asked for cannot be used on this host."""


def chosen() -> str:
    """`unix` where the host has AF_UNIX, else `tcp`; HOSTRT_AGENT_TRANSPORT overrides it."""
    forced = os.environ.get(TRANSPORT_ENV, "")
    if forced not in ("", "unix", "tcp"):
        raise TransportError(f"{TRANSPORT_ENV} must be unix or tcp, not {forced!r}")
    if forced == "unix" and not hasattr(socket, "AF_UNIX"):
        raise TransportError(f"{TRANSPORT_ENV}=unix: this host has no unix sockets")
    return forced or ("unix" if hasattr(socket, "AF_UNIX") else "tcp")


class Listener:
    """The agent's listening socket and what a connection must present to be served."""

    def __init__(self, machine_dir: Path, kind: str) -> None:
        self.machine_dir = machine_dir
        self.kind = kind
        self._token = b""
        remove_endpoint(machine_dir)
        if kind == "unix":
            self.sock = _listen_unix(machine_dir / SOCKET_NAME)
        else:
            import secrets  # the agent's imports only: clients pay for none of this

            self.sock = _listen_tcp()
            self._token = secrets.token_hex(TOKEN_BYTES).encode()
            _write_private(machine_dir / ENDPOINT_NAME, b"%d %s\n" % (self.sock.getsockname()[1], self._token))
        self.sock.settimeout(1.0)  # the accept loop looks at the guest connection every second

    def accept(self) -> socket.socket:
        conn, _ = self.sock.accept()
        conn.settimeout(None)
        if self.kind == "tcp":
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def admit(self, conn: socket.socket, reader) -> bool:  # noqa: ANN001 - the connection's binary reader
        """Whether the client may be served: on TCP, it proves that it knows the token."""
        if self.kind == "unix":
            return True
        import hmac
        import secrets

        conn.settimeout(TOKEN_TIMEOUT)
        try:
            client_nonce = reader.readline(_NONCE_LINE).rstrip(b"\n")
            if len(client_nonce) != 2 * NONCE_BYTES or not all(c in b"0123456789abcdef" for c in client_nonce):
                return False
            agent_nonce = secrets.token_hex(NONCE_BYTES).encode()
            conn.sendall(b"%s %s\n" % (agent_nonce, _proof(self._token, b"agent", client_nonce, agent_nonce)))
            answer = reader.readline(_PROOF_LINE)
        except OSError:
            return False
        conn.settimeout(None)
        return hmac.compare_digest(answer, _proof(self._token, b"client", agent_nonce, client_nonce) + b"\n")

    def close(self) -> None:
        self.sock.close()
        remove_endpoint(self.machine_dir)


def _listen_unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is created 0600: no window in which others may connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock


def _listen_tcp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: no other socket may share the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a file that is 0600 from its creation, then rename it in place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_endpoint(machine_dir: Path) -> None:
    (machine_dir / SOCKET_NAME).unlink(missing_ok=True)
    (machine_dir / ENDPOINT_NAME).unlink(missing_ok=True)


def available(machine_dir: Path) -> bool:
    """Whether an agent of the machine has written an endpoint (it may have died since)."""
    return (machine_dir / SOCKET_NAME).exists() or (machine_dir / ENDPOINT_NAME).exists()


def connect(machine_dir: Path) -> socket.socket:
    """A connection to the machine's agent (on TCP, after both sides proved they know the token).
    OSError: no agent, or a listener that is not it."""
    endpoint = machine_dir / ENDPOINT_NAME
    if hasattr(socket, "AF_UNIX") and (machine_dir / SOCKET_NAME).exists():
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: object = str(machine_dir / SOCKET_NAME)
        token = b""
    else:
        try:
            port_text, token_text = endpoint.read_text().split()
            port = int(port_text)
        except ValueError:
            raise ConnectionRefusedError(f"{endpoint} is not an agent endpoint") from None
        conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        address, token = ("127.0.0.1", port), token_text.encode()
    try:
        conn.connect(address)
        if token:
            _prove(conn, token)
    except BaseException:
        conn.close()
        raise
    return conn


def _prove(conn: socket.socket, token: bytes) -> None:
    """The client's half of the exchange in `Listener.admit`."""
    import hmac
    import secrets

    client_nonce = secrets.token_hex(NONCE_BYTES).encode()
    conn.sendall(client_nonce + b"\n")
    answer = b""
    conn.settimeout(TOKEN_TIMEOUT)
    while not answer.endswith(b"\n") and len(answer) < _NONCE_LINE + _PROOF_LINE:
        chunk = conn.recv(_NONCE_LINE + _PROOF_LINE - len(answer))
        if not chunk:
            break
        answer += chunk
    conn.settimeout(None)
    agent_nonce, _, proof = answer.rstrip(b"\n").partition(b" ")
    if len(agent_nonce) != 2 * NONCE_BYTES or not hmac.compare_digest(
            proof, _proof(token, b"agent", client_nonce, agent_nonce)):
        raise ConnectionRefusedError("the machine's agent port is held by something that is not its agent")
    conn.sendall(_proof(token, b"client", agent_nonce, client_nonce) + b"\n")
