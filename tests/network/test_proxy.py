"""The port proxy against real sockets on loopback: bytes intact both ways, half-close passed
on, UDP replies back to their sender, nothing left open after close (no root needed)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import selectors
import socket
import threading
from collections.abc import Iterator

import pytest

from hostrt.network.ports import PortSpec
from hostrt.network.proxy import PortProxy


@contextlib.contextmanager
def selector_loop(selector: selectors.BaseSelector) -> Iterator[threading.Thread]:
    """The proxies' event loop in a thread while the block runs; stopped and joined after it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            for key, mask in selector.select(timeout=0.05):
                key.data.ready(mask)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join()


@pytest.fixture
def serve() -> Iterator:
    """Runs a PortProxy's selector loop in a thread; yields a function that opens one."""
    selector = selectors.DefaultSelector()
    proxies: list[PortProxy] = []

    def open_proxy(target_port: int, protocol: str = "tcp") -> tuple[PortProxy, int]:
        proxy = PortProxy(selector, "127.0.0.1", [PortSpec("127.0.0.1", 0, target_port, protocol)])
        proxies.append(proxy)
        return proxy, proxy.open()[0].host_port

    with selector_loop(selector):
        yield open_proxy
    for proxy in proxies:
        proxy.close()
    assert not selector.get_map()


def test_tcp_bytes_and_half_close_pass_through(serve) -> None:  # noqa: ANN001
    server = socket.create_server(("127.0.0.1", 0))
    payload = os.urandom(1 << 20) * 20

    def digest_then_reply() -> None:
        conn, _ = server.accept()
        conn.settimeout(10)
        digest = hashlib.sha256()
        while chunk := conn.recv(1 << 20):  # ends only if the client's shutdown came through
            digest.update(chunk)
        conn.sendall(digest.hexdigest().encode() + payload)
        conn.close()

    threading.Thread(target=digest_then_reply, daemon=True).start()
    proxy, port = serve(server.getsockname()[1])
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    sender = threading.Thread(target=lambda: (client.sendall(payload), client.shutdown(socket.SHUT_WR)))
    sender.start()
    received = bytearray()
    while chunk := client.recv(1 << 20):
        received += chunk
    sender.join()
    assert bytes(received[:64]).decode() == hashlib.sha256(payload).hexdigest()
    assert bytes(received[64:]) == payload
    client.close()
    server.close()


def test_connection_refused_by_the_container_closes_the_client(serve) -> None:  # noqa: ANN001
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]
    proxy, port = serve(dead_port)
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert client.recv(10) == b""
    client.close()


def test_udp_replies_reach_their_sender(serve) -> None:  # noqa: ANN001
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))

    def reply_upper() -> None:
        for _ in range(2):
            data, peer = echo.recvfrom(100)
            echo.sendto(data.upper(), peer)

    threading.Thread(target=reply_upper, daemon=True).start()
    proxy, port = serve(echo.getsockname()[1], "udp")
    for word in (b"one", b"two"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.sendto(word, ("127.0.0.1", port))
            assert client.recvfrom(100)[0] == word.upper()
    echo.close()


def test_a_busy_port_fails_and_binds_nothing(serve) -> None:  # noqa: ANN001
    taken = socket.create_server(("127.0.0.1", 0))
    selector = selectors.DefaultSelector()
    proxy = PortProxy(selector, "127.0.0.1", [PortSpec("127.0.0.1", 0, 80),
                                             PortSpec("127.0.0.1", taken.getsockname()[1], 80)])
    with pytest.raises(OSError, match="cannot publish"):
        proxy.open()
    assert not selector.get_map() and proxy.listeners == []
    taken.close()
