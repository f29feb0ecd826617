"""A request to the monitor whose answer comes back (and the connection closes) before the client
has returned from sending it: the client must take the answer, not fail on an empty second send
(EPIPE), which made a refused `run -d --rm` exit 1 without a word and sent its request twice."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from hostrt.engine import monitor_client


def test_answer_that_arrives_before_send_returns_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "monitor.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    requests = []

    def monitor() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                line = b""
                while not line.endswith(b"\n"):
                    line += conn.recv(65536)
                requests.append(line)
                conn.sendall(b'{"ok": false, "error": "busy"}\n')  # and close at once, as the monitor may

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    real_send_fds = socket.send_fds

    def send_fds_then_wait(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        sent = real_send_fds(*args, **kwargs)
        time.sleep(0.3)  # the monitor answers and closes meanwhile
        return sent

    monkeypatch.setattr(socket, "send_fds", send_fds_then_wait)
    lock_fd = os.open(tmp_path, os.O_RDONLY)
    try:
        reply = monitor_client._send(path, {"op": "start", "id": "x"}, 5, lock_fd)
    finally:
        os.close(lock_fd)
        listener.close()
    assert reply == {"ok": False, "error": "busy"}
    assert len(requests) == 1
