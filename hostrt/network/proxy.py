"""Published ports as a userspace proxy driven by a selector, for the monitor or a foreground run.

Why not DNAT: a DNAT rule for 127.0.0.1 needs `route_localnet` and a SNAT hairpin on the
host, rules that a killed hostrt leaves behind; a listening socket dies with its process.
The monitor already waits for every detached container, so it holds the listeners of their
published ports (no process per container), opened before the container is created (a
busy port fails the start, as in docker) and closed when the container exits.

TCP connections are copied both ways with back-pressure (a side is not read while the
other still has unsent bytes) and half-close passed on; UDP datagrams are relayed through
one connected socket per client address.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import socket
from collections.abc import Callable
from pathlib import Path

from hostrt.network.ports import PortSpec

CHUNK = 1 << 20  # bytes per splice and the pipe size: fewer wake-ups per megabyte
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
PUBLISHED_FILE = "published.json"
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class _Endpoint:
    """One socket of a TCP relay; `queued` bytes wait in its pipe to be written to it.

    Bytes go socket -> pipe -> socket with splice(2): the kernel moves pages and Python
    never copies the data, which is what keeps the proxy near loopback speed.
    """

    def __init__(self, relay: "_Relay", sock: socket.socket, connecting: bool = False) -> None:
        import fcntl  # Linux only, as the monitor; this module is imported on every OS

        self.relay, self.sock, self.connecting = relay, sock, connecting
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.pipe_w, fcntl.F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass  # the default 64 KiB pipe works, with more wake-ups
        self.queued = 0
        self.read_done = False  # the far side of this socket sent EOF
        self.write_done = False  # we have shut down writing to it
        self.events = 0
        self.peer: _Endpoint

    def wanted(self) -> int:
        if self.connecting:
            return WRITE
        events = WRITE if self.queued else 0
        if not self.read_done and not self.peer.queued and not self.peer.connecting:
            events |= READ
        return events

    def ready(self, mask: int) -> None:
        try:
            if self.connecting:
                error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise OSError(error, "connect")
                self.connecting = False
            elif mask & WRITE and self.queued:
                self.flush()
            if mask & READ and not self.read_done:
                moved = os.splice(self.sock.fileno(), self.peer.pipe_w, CHUNK, flags=_SPLICE_FLAGS)
                if moved:
                    self.peer.queued += moved
                    if not self.peer.connecting:
                        self.peer.flush()
                else:
                    self.read_done = True
            for end in (self, self.peer):
                if end.peer.read_done and not end.queued and not end.write_done and not end.connecting:
                    end.sock.shutdown(socket.SHUT_WR)
                    end.write_done = True
        except BlockingIOError:
            pass
        except OSError:
            self.relay.close()
            return
        self.relay.update()

    def flush(self) -> None:
        """Move what the pipe holds into the socket, until it is empty or the socket is full."""
        while self.queued:
            self.queued -= os.splice(self.pipe_r, self.sock.fileno(), self.queued, flags=_SPLICE_FLAGS)

    def close(self) -> None:
        self.sock.close()
        os.close(self.pipe_r)
        os.close(self.pipe_w)


class _Relay:
    """An accepted client and its connection to the container."""

    def __init__(self, owner: "PortProxy", client: socket.socket, target: tuple[str, int]) -> None:
        self.owner, self.closed = owner, False
        try:
            upstream = owner.upstream(socket.SOCK_STREAM)
        except OSError:
            client.close()  # the container is not there (yet, or any more): refuse as a closed port would
            self.closed = True
            return
        upstream.setblocking(False)
        client.setblocking(False)
        code = upstream.connect_ex(target)
        self.client = _Endpoint(self, client)
        self.upstream = _Endpoint(self, upstream, connecting=code in (errno.EINPROGRESS, errno.EAGAIN))
        self.client.peer, self.upstream.peer = self.upstream, self.client
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            self.close()
            return
        owner.relays.add(self)
        self.update()

    def update(self) -> None:
        if self.closed:
            return
        if self.client.write_done and self.upstream.write_done:
            self.close()
            return
        for end in (self.client, self.upstream):
            wanted = end.wanted()
            if wanted == end.events:
                continue
            if end.events and wanted:
                self.owner.selector.modify(end.sock, wanted, end)
            elif wanted:
                self.owner.selector.register(end.sock, wanted, end)
            else:
                self.owner.selector.unregister(end.sock)
            end.events = wanted

    def close(self) -> None:
        if self.closed:
            return  # its pipe fds may already belong to someone else
        self.closed = True
        for end in (self.client, self.upstream):
            if end.events:
                self.owner.selector.unregister(end.sock)
                end.events = 0
            end.close()
        self.owner.relays.discard(self)


class _Listener:
    """A TCP listening socket: each connection becomes a relay to the container's port."""

    def __init__(self, owner: "PortProxy", sock: socket.socket, target: tuple[str, int]) -> None:
        self.owner, self.sock, self.target = owner, sock, target

    def ready(self, mask: int) -> None:
        try:
            client, _ = self.sock.accept()
        except OSError:
            return
        _Relay(self.owner, client, self.target)


class _UdpUpstream:
    """The connected socket standing for one UDP client towards the container."""

    def __init__(self, listener: "_UdpListener", client: tuple[str, int]) -> None:
        self.listener, self.client = listener, client
        self.sock = listener.owner.upstream(socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(listener.target)

    def ready(self, mask: int) -> None:
        try:
            self.listener.sock.sendto(self.sock.recv(65535), self.client)
        except OSError:
            pass


class _UdpListener:
    def __init__(self, owner: "PortProxy", sock: socket.socket, target: tuple[str, int]) -> None:
        self.owner, self.sock, self.target = owner, sock, target
        self.clients: dict[tuple[str, int], _UdpUpstream] = {}

    def ready(self, mask: int) -> None:
        try:
            data, client = self.sock.recvfrom(65535)
            upstream = self.clients.get(client)
            if upstream is None:
                upstream = self.clients[client] = _UdpUpstream(self, client)
                self.owner.selector.register(upstream.sock, READ, upstream)
            upstream.sock.send(data)
        except OSError:
            pass


def _plain_socket(kind: int) -> socket.socket:
    return socket.socket(socket.AF_INET, kind)


class PortProxy:
    """The published ports of one container, served by a caller's selector loop.

    `upstream(kind)` makes the sockets towards the container: plain ones for an address on a
    bridge, or ones made inside the container's own namespace (`enter.socket_in`).
    """

    def __init__(self, selector: selectors.BaseSelector, target_ip: str, ports: list[PortSpec],
                 upstream: Callable[[int], socket.socket] = _plain_socket) -> None:
        self.selector, self.target_ip, self.ports, self.upstream = selector, target_ip, ports, upstream
        self.listeners: list[_Listener | _UdpListener] = []
        self.relays: set[_Relay] = set()

    def open(self) -> list[PortSpec]:
        """Bind every port (all or none); the bindings with the ports actually given."""
        bound = []
        try:
            for spec in self.ports:
                kind = socket.SOCK_STREAM if spec.protocol == "tcp" else socket.SOCK_DGRAM
                sock = socket.socket(socket.AF_INET, kind)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((spec.host_ip, spec.host_port))
                except OSError as err:
                    sock.close()
                    raise OSError(err.errno, f"cannot publish {spec.host_ip}:{spec.host_port}/{spec.protocol}: "
                                             f"{err.strerror}") from None
                sock.setblocking(False)
                target = (self.target_ip, spec.container_port)
                if kind == socket.SOCK_STREAM:
                    sock.listen(128)
                    listener: _Listener | _UdpListener = _Listener(self, sock, target)
                else:
                    listener = _UdpListener(self, sock, target)
                self.listeners.append(listener)
                self.selector.register(sock, READ, listener)
                bound.append(PortSpec(spec.host_ip, sock.getsockname()[1], spec.container_port, spec.protocol))
        except OSError:
            self.close()
            raise
        return bound

    def close(self) -> None:
        for relay in list(self.relays):
            relay.close()
        for listener in self.listeners:
            if isinstance(listener, _UdpListener):
                for upstream in listener.clients.values():
                    self.selector.unregister(upstream.sock)
                    upstream.sock.close()
            self.selector.unregister(listener.sock)
            listener.sock.close()
        self.listeners = []


def open_for(container_dir: Path, selector: selectors.BaseSelector, again: bool = False) -> PortProxy | None:
    """Listeners for the ports in the container's network.json (None if it publishes none).

    The ports actually bound go to `published.json` for `hostrt port`. `again`: bind the
    ports of the existing `published.json` (a restarted monitor taking over live containers).
    An attachment with `enter` (a pid file), or a rootless one (slirp4netns), reaches the
    container inside its own namespace.
    """
    try:
        attachment = json.loads((container_dir / "network.json").read_text())
        ports = json.loads((container_dir / PUBLISHED_FILE).read_text()) if again else attachment.get("ports")
    except (OSError, ValueError):
        return None
    if not ports:
        return None
    upstream = _plain_socket
    if attachment.get("mode") in ("slirp4netns", "slirp"):  # its address exists only inside its own namespace
        from functools import partial

        from hostrt.network import slirp
        from hostrt.network.enter import socket_in_namespace

        attachment["address"] = attachment.get("address") or slirp.ADDRESS
        upstream = partial(socket_in_namespace, Path(attachment["netns"]))
    if not attachment.get("address"):
        return None
    if attachment.get("enter"):
        from functools import partial

        from hostrt.network.enter import socket_in

        upstream = partial(socket_in, container_dir / attachment["enter"])
    proxy = PortProxy(selector, attachment["address"], [PortSpec(**p) for p in ports], upstream)
    bound = proxy.open()
    (container_dir / PUBLISHED_FILE).write_text(json.dumps([p.to_dict() for p in bound]))
    return proxy


def closed(container_dir: Path, proxy: PortProxy | None) -> None:
    if proxy is not None:
        proxy.close()
    (container_dir / PUBLISHED_FILE).unlink(missing_ok=True)


class ThreadedProxy:
    """For a foreground run: the same proxy in a thread of the hostrt process that waits."""

    def __init__(self, container_dir: Path) -> None:
        import threading

        self.container_dir = container_dir
        self.selector = selectors.DefaultSelector()
        self.proxy = open_for(container_dir, self.selector)
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True) if self.proxy else None
        if self.thread:
            self.thread.start()

    def _loop(self) -> None:
        while not self.stopping:
            for key, mask in self.selector.select(timeout=0.2):
                key.data.ready(mask)

    def close(self) -> None:
        self.stopping = True
        if self.thread:
            self.thread.join()
        closed(self.container_dir, self.proxy)
