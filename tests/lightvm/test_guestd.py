"""The resident guest daemon, run here on the host from a real payload: it answers only
requests carrying its token, relays stdin/stdout/stderr and exit codes as frames, serves
several requests from one process, and a dead daemon is replaced by the next start."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.lightvm.payload import payload
from tests.lightvm.conftest import extract_payload

FRAME = struct.Struct("!cI")


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The payload unpacked as the guest has it, and the environment of a private guest root."""
    version, data = payload()
    code = tmp_path / "code" / version
    code.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        extract_payload(tar, code)
    env = {"PATH": os.environ["PATH"], "HOSTRT_ROOT": str(tmp_path / "guest-root"),
           "HOSTRT_GUESTD_STATE": str(tmp_path / "state")}
    yield code, env
    for state in (tmp_path / "state").glob("*.json"):
        try:
            os.kill(json.loads(state.read_text())["pid"], signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


def start_daemon(code: Path, env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-S", "-m", "backends.lightvm.guestd"], cwd=code, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    port, token = done.stdout.split()
    return int(port), token


def request(port: int, header: dict, stdin: bytes = b"") -> tuple[int | None, bytes, bytes]:
    """(exit status or None if the daemon hung up without one, stdout, stderr)."""
    out, err = bytearray(), bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(json.dumps(header).encode() + b"\n" + stdin)
        conn.shutdown(socket.SHUT_WR)
        reader = conn.makefile("rb")
        while len(head := reader.read(FRAME.size)) == FRAME.size:
            kind, length = FRAME.unpack(head)
            payload_bytes = reader.read(length)
            if kind == b"x":
                return struct.unpack("!i", payload_bytes)[0], bytes(out), bytes(err)
            (out if kind == b"o" else err).extend(payload_bytes)
    return None, bytes(out), bytes(err)


def test_daemon_serves_operations_with_its_token_only(shipped: tuple[Path, dict[str, str]]) -> None:
    code, env = shipped
    port, token = start_daemon(code, env)
    layers = Path(env["HOSTRT_ROOT"]) / "layers"
    (layers / "aa").mkdir(parents=True)

    wanted = json.dumps({"spec": {}, "layers": ["aa", "bb", "cc"]}).encode()
    assert request(port, {"token": "0" * 64, "op": "prepare", "args": ["c1"]}, wanted) == (None, b"", b"")
    assert request(port, {"op": "prepare", "args": ["c1"]}, wanted) == (None, b"", b"")

    code_, out, _ = request(port, {"token": token, "op": "prepare", "args": ["c1"]}, wanted)
    assert (code_, json.loads(out)) == (0, {"missing": ["bb", "cc"]})
    assert not (Path(env["HOSTRT_ROOT"]) / "containers" / "c1").exists(), "nothing made while layers are missing"
    status, _, err = request(port, {"token": token, "op": "no-such-op", "args": []})
    assert status == 2 and b"usage: guest_agent" in err


def test_stdin_reaches_the_operation_and_errors_come_back_as_one_line(shipped: tuple[Path, dict[str, str]]) -> None:
    code, env = shipped
    port, token = start_daemon(code, env)
    blob = os.urandom(300_000)  # more than a pipe holds: stdin is streamed, not buffered whole
    status, _, err = request(port, {"token": token, "op": "put-layer", "args": ["sha256:" + "0" * 64, "gzip"]}, blob)
    assert status == 125
    assert err.decode().strip().startswith("hostrt: error: layer sha256:0000") and err.count(b"\n") == 1
    assert not any((Path(env["HOSTRT_ROOT"]) / "layers").iterdir()), "nothing half-written left behind"


def test_one_daemon_per_code_version_and_a_dead_one_is_replaced(shipped: tuple[Path, dict[str, str]]) -> None:
    code, env = shipped
    first = start_daemon(code, env)
    assert start_daemon(code, env) == first, "a live daemon is reused"
    state = json.loads(next(Path(env["HOSTRT_GUESTD_STATE"]).glob("*.json")).read_text())
    assert oct(Path(env["HOSTRT_GUESTD_STATE"], f"{code.name}.json").stat().st_mode & 0o777) == "0o600"
    os.kill(state["pid"], signal.SIGKILL)
    port, token = start_daemon(code, env)
    assert (port, token) != first
    done = request(port, {"token": token, "op": "prepare", "args": ["c2"]}, json.dumps({"layers": ["dd"]}).encode())
    assert (done[0], json.loads(done[1])) == (0, {"missing": ["dd"]})
