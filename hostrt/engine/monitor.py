"""The monitor: one small daemon per hostrt root and caller's context that waits for every
detached container started from that context.

A process per container (as conmon or a shim) would cost ~8 MB of CPython each; one
process for all of them costs that once. It is the children's subreaper, so a container's
init — orphaned when the runtime that created it exits — becomes its child: it collects
each exit status (and OOM verdict) even when no hostrt command is running, copies the
container's stdout/stderr into a size-capped JSON-lines log (docker's json-file format),
and removes `--rm` containers. Standard library only, to stay small.

Requests arrive as one JSON line on a unix socket: {"op": "start", "id": ..., "dir": ...,
"auto_remove": bool}, with the container's lock as an SCM_RIGHTS descriptor; the reply is
{"ok": true, "pid": N} or {"ok": false, "error": ...}. It exits after a minute with nothing
to watch. Started after one was SIGKILLed, it serves again the published ports of the
containers that outlived it (`hostrt.network.takeover`).

It creates containers and serves their ports in its own namespaces, root directory and
cgroups, so a command from another context has its own monitor (the socket's name carries
the context's key, `hostrt.context`) and a request whose sender's context differs from the
monitor's (the peer's pid from SO_PEERCRED) is refused.

It must outlive anything its clients and containers do, for when it dies every detached
container loses the reader of its output (and dies of SIGPIPE) and nobody records its end.
So a client is read without blocking and dropped when it stalls (a stopped `hostrt`), a
reply to a client that died is dropped, output that cannot be logged (a full disk) is
dropped as Docker drops it, the exit record is written into space reserved at start, and
a failure about one container is noted in the monitor's log, never raised.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hostrt import context
from hostrt.engine import logfile, supervise
from hostrt.engine.runtime_cli import Runtime, RuntimeCallError
from hostrt.engine.snapshot import unmount_rootfs
from hostrt.network import proxy, takeover

LOG_FILE = "container.log"
LOG_LIMIT = 10 << 20  # bytes per log file before it rotates to .1 (one old file kept)
IDLE_EXIT_SECONDS = 60.0
CLIENT_TIMEOUT = 10.0  # seconds a client may take to send its request


def note(message: str) -> None:
    """A line in the monitor's log, if the disk takes it."""
    try:
        os.write(1, f"monitor: {message}\n".encode(errors="replace"))
    except OSError:
        pass


def _append(path: Path, data: bytes) -> None:
    """Append whole or not at all: a line cut short by a full disk is cut off again, so that
    the next line, once there is room, does not run into it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            os.ftruncate(fd, end)
            raise
    finally:
        os.close(fd)


@dataclass
class Watched:
    """One container the monitor waits for."""

    container_id: str
    directory: Path
    pid: int
    auto_remove: bool
    log_size: int = 0
    dropped: int = 0  # log lines lost to write errors (a full disk)
    streams: dict[int, str] = field(default_factory=dict)  # read fd -> "stdout" | "stderr"
    partial: dict[int, bytes] = field(default_factory=dict)


@dataclass
class Client:
    """A connection whose request is still arriving."""

    conn: socket.socket
    deadline: float
    foreign: bool = False  # its sender runs in another context than the monitor's (hostrt.context)
    data: bytes = b""
    fds: list[int] = field(default_factory=list)  # the container's lock, held until the start is done

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        self.conn.close()


class Monitor:
    def __init__(self, socket_path: Path, runtime: Runtime) -> None:
        self.socket_path = socket_path
        self.served = takeover.served_file(socket_path)  # the containers whose ports it serves
        self.runtime = runtime
        self.selector = selectors.DefaultSelector()
        self.watched: dict[int, Watched] = {}  # init pid -> container
        self.proxies: dict[str, proxy.PortProxy | None] = {}  # container id -> its published ports
        self.adopted: list[takeover.Adopted] = []  # containers whose ports a killed monitor served
        self.clients: dict[int, Client] = {}  # connection fd -> client
        self.removals: list[Watched] = []  # --rm containers that ended while another command held them
        self.last_busy = time.monotonic()

    # -- logs ---------------------------------------------------------------------------
    def _append_log(self, item: Watched, stream: str, text: str) -> None:
        """As Docker's json-file driver: a line that cannot be written is dropped, never the container."""
        path = item.directory / LOG_FILE
        line = logfile.entry(stream, text).encode()
        try:
            if item.log_size + len(line) > LOG_LIMIT:
                item.log_size = 0
                os.replace(path, path.with_name(LOG_FILE + ".1"))
            _append(path, line)
            item.log_size += len(line)
        except OSError as err:
            if not item.dropped:
                note(f"dropping output of {item.container_id[:12]}: {err}")
            item.dropped += 1

    def _on_output(self, fd: int, item: Watched) -> None:
        try:
            chunk = os.read(fd, 65536)
        except OSError as err:
            if isinstance(err, BlockingIOError):
                raise
            chunk = b""  # EIO from a pty master: the container side has closed
        stream = item.streams[fd]
        if not chunk:
            self._close_stream(fd, item)
            return
        data = item.partial.pop(fd, b"") + chunk
        *lines, rest = data.split(b"\n")
        for raw in lines:
            self._append_log(item, stream, raw.decode(errors="replace") + "\n")
        if rest:
            item.partial[fd] = rest

    def _close_stream(self, fd: int, item: Watched) -> None:
        rest = item.partial.pop(fd, b"")
        if rest:
            self._append_log(item, item.streams[fd], rest.decode(errors="replace"))
        self.selector.unregister(fd)
        os.close(fd)
        del item.streams[fd]

    # -- containers ---------------------------------------------------------------------
    def start(self, request: dict) -> dict:
        """Start the container; once it runs, say so beside its record, for a client that dies
        before it records the start itself."""
        reply = self._start_published(request)
        if reply["ok"]:
            try:
                supervise.write_started(Path(request["dir"]), reply["pid"])
            except OSError as err:
                note(f"cannot record the start of {request['id'][:12]}: {err}")
        return reply

    def _start_published(self, request: dict) -> dict:
        """Publish the container's ports (a busy one fails the start), then create and start it."""
        try:
            self.proxies[request["id"]] = proxy.open_for(Path(request["dir"]), self.selector)
        except OSError as err:
            return {"ok": False, "error": err.strerror or str(err)}  # one line, without "[Errno N]"
        if self.proxies[request["id"]] is not None:
            takeover.mark(self.served, request["id"], Path(request["dir"]))
        reply = self._start_with_tty(request) if request.get("tty") else self._start(request)
        if not reply["ok"] and "pid" not in reply:
            proxy.closed(Path(request["dir"]), self.proxies.pop(request["id"], None))
            takeover.mark(self.served, request["id"], None)
        return reply

    def _start(self, request: dict) -> dict:
        directory = Path(request["dir"])
        container_id = request["id"]
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            with open(os.devnull, "rb") as devnull:
                pid = self.runtime.run_detached(container_id, directory, directory / supervise.PID_FILE,
                                                devnull, out_w, err_w)
        except (RuntimeCallError, OSError) as err:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            return {"ok": False, "error": str(err)}
        os.close(out_w)
        os.close(err_w)
        self._watch(request, pid, {out_r: "stdout", err_r: "stderr"})
        return {"ok": True, "pid": pid}

    def _start_with_tty(self, request: dict) -> dict:
        """`run -d -t`: the pty master is read like a stdout pipe."""
        from hostrt.engine import console

        directory = Path(request["dir"])
        container_id = request["id"]
        try:
            with console.console_socket() as (listener, socket_path), open(os.devnull, "rb") as devnull:
                pid = self.runtime.create(container_id, directory, directory / supervise.PID_FILE, devnull, devnull,
                                          devnull, console_socket=socket_path)
                master = console.receive_master(listener)
        except (RuntimeCallError, OSError) as err:
            return {"ok": False, "error": str(err)}
        return self._watch_and_start(request, pid, {master: "stdout"})

    def _watch(self, request: dict, pid: int, streams: dict[int, str]) -> Watched:
        """Wait for the container's init and read its output (kept in its pipes until read)."""
        item = Watched(request["id"], Path(request["dir"]), pid, bool(request.get("auto_remove")))
        for fd, stream in streams.items():
            os.set_blocking(fd, False)
            item.streams[fd] = stream
            self.selector.register(fd, selectors.EVENT_READ, item)
        self.watched[pid] = item
        return item

    def _watch_and_start(self, request: dict, pid: int, streams: dict[int, str]) -> dict:
        """Watch a created container's init and output, then let it run."""
        item = self._watch(request, pid, streams)
        try:
            self.runtime.start(item.container_id)
        except RuntimeCallError as err:
            return {"ok": False, "error": str(err), "pid": pid}
        return {"ok": True, "pid": pid}

    def reap(self) -> None:
        for pid in list(self.watched):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 255 << 8  # not our child after all: its status is lost
            if done == 0:
                continue
            item = self.watched.pop(pid)
            try:
                self._ended(item, status)
            except Exception as err:  # noqa: BLE001 - one container's trouble must not end the others' monitor
                note(f"after {item.container_id[:12]} ended: {err.__class__.__name__}: {err}")
            self.last_busy = time.monotonic()

    def _ended(self, item: Watched, status: int) -> None:
        proxy.closed(item.directory, self.proxies.pop(item.container_id, None))
        takeover.mark(self.served, item.container_id, None)
        for fd in list(item.streams):  # what the container wrote before exiting
            try:
                while fd in item.streams:
                    self._on_output(fd, item)
            except BlockingIOError:
                pass  # a surviving grandchild still holds the pipe; keep reading it later
        code = supervise.exit_code_of(status)
        try:
            supervise.write_exit(item.directory, code, supervise.oom_killed(item.container_id))
        except OSError as err:  # its directory was removed (rm -f gave up waiting), or no reservation on a full disk
            note(f"cannot record the exit ({code}) of {item.container_id[:12]}: {err}")
        if item.dropped:
            note(f"{item.container_id[:12]} ended; {item.dropped} lines of its output could not be logged")
        self.runtime.delete(item.container_id, force=True)
        if item.auto_remove:
            self._remove(item)

    def _remove(self, item: Watched) -> None:
        """Remove a --rm container under its lock; if another command holds it, try again later
        (that command may be its client, recording the start: never wait for it here)."""
        for fd in list(item.streams):
            self._close_stream(fd, item)
        from hostrt.engine.dir_locks import BUSY, GONE
        from hostrt.engine.record_store import BaseRecordStore
        from hostrt.network import attach

        store = BaseRecordStore(item.directory.parent)
        with store.probe(item.container_id) as state:
            if state == BUSY:
                if item not in self.removals:
                    self.removals.append(item)
                return
            if item in self.removals:
                self.removals.remove(item)
            if state == GONE:
                return  # removed by someone else meanwhile
            try:
                attach.teardown(item.directory, item.container_id)
                unmount_rootfs(item.directory)
                store.remove(item.container_id)
            except OSError as err:  # what is left, `system prune` finds
                note(f"cannot remove {item.container_id[:12]}: {err}")

    def take_over(self) -> None:
        """Serve again the ports a killed monitor held for containers that still run."""
        def ended(item: takeover.Adopted) -> None:
            self.adopted.remove(item)
            takeover.mark(self.served, item.container_id, None)
            self.last_busy = time.monotonic()

        self.adopted = takeover.take_over(self.served, self.selector, ended)

    def status(self) -> dict:
        """The reply to a ping: how many containers it waits for, and how it runs the runtime."""
        return {"ok": True, "watching": len(self.watched), "runtime_in_process": self.runtime.in_process}

    # -- the loop -----------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # EMFILE and the like: the client sees its connection refused
                note(f"cannot accept a client: {err}")
                return
            conn.setblocking(False)
            # Judged as soon as it connects: a client killed after sending its request has
            # exited by the time it is read, and its container must still be started.
            foreign = context.peer_differs(conn)
            self.clients[conn.fileno()] = Client(conn, time.monotonic() + CLIENT_TIMEOUT, foreign)
            self.selector.register(conn, selectors.EVENT_READ, "client")

    def _on_client(self, client: Client) -> None:
        """Read what the client sent; once its request line is whole, answer it."""
        try:
            chunk, fds, _flags, _addr = socket.recv_fds(client.conn, 65536, 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk, fds = b"", []
        for fd in fds:
            os.set_inheritable(fd, False)  # SCM_RIGHTS descriptors arrive without close-on-exec
        client.fds += fds
        client.data += chunk
        if chunk and not client.data.endswith(b"\n"):
            return
        self._drop_client(client)
        if not chunk:
            client.close()  # it went away before its request was whole
            return
        try:
            request = json.loads(client.data)
            if client.foreign:
                reply = {"ok": False, "error": f"the monitor at {self.socket_path} serves another namespace context"}
            else:
                reply = self.start(request) if request.get("op") == "start" else self.status()
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            reply = {"ok": False, "error": f"bad request: {err}"}
        finally:
            for fd in client.fds:  # the start is recorded: the container's lock may go
                os.close(fd)
            client.fds = []
        try:
            client.conn.send(json.dumps(reply).encode() + b"\n")  # small: fits the socket buffer
        except OSError:
            pass  # the client died meanwhile (killed in the middle of its start): the container runs on
        client.conn.close()
        self.last_busy = time.monotonic()

    def _drop_client(self, client: Client) -> None:
        self.selector.unregister(client.conn)
        del self.clients[client.conn.fileno()]

    def _expire_clients(self) -> None:
        """A client that stalls (stopped, or too slow) is hung up on; the others are served meanwhile."""
        now = time.monotonic()
        for client in [c for c in self.clients.values() if c.deadline < now]:
            note("dropped a client that did not finish its request in time")
            self._drop_client(client)
            client.close()

    def _timeout(self) -> float:
        if self.removals:
            return 0.2
        if self.clients:
            return max(0.0, min(c.deadline for c in self.clients.values()) - time.monotonic()) + 0.01
        return 5.0

    def _dispatch(self, key: selectors.SelectorKey, mask: int, listener: socket.socket, wake_r: int) -> None:
        if key.data == "wake":
            while True:
                try:
                    if not os.read(wake_r, 512):
                        break
                except BlockingIOError:
                    break
        elif key.data == "listen":
            self._accept(listener)
        elif key.data == "client":
            self._on_client(self.clients[key.fd])
        elif isinstance(key.data, Watched):
            try:
                self._on_output(key.fd, key.data)
            except BlockingIOError:
                pass
        else:
            key.data.ready(mask)  # a published port's listener or connection

    def serve(self, listener: socket.socket) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        listener.setblocking(False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        self.selector.register(listener, selectors.EVENT_READ, "listen")
        while True:
            for key, mask in self.selector.select(timeout=self._timeout()):
                try:
                    self._dispatch(key, mask, listener, wake_r)
                except Exception as err:  # noqa: BLE001 - noted; the other containers keep their monitor
                    note(f"{err.__class__.__name__}: {err}")
            self.reap()
            self._expire_clients()
            for item in list(self.removals):
                self._remove(item)
            if (not self.watched and not self.adopted and not self.clients and not self.removals
                    and time.monotonic() - self.last_busy > IDLE_EXIT_SECONDS):
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hostrt-monitor")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--runtime-root", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    args = parser.parse_args(argv)
    from backends.linux_native import sealed_exe

    sealed_exe.reexec()  # the runtime runs in forks of this process (runtime_fork.usable)
    supervise.become_subreaper()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    args.socket.unlink(missing_ok=True)
    listener.bind(str(args.socket))
    os.chmod(args.socket, 0o600)
    listener.listen(64)
    from hostrt.engine import runtime_fork

    # hostrt's own runtime runs in forked children of this process: no interpreter start per call.
    in_process = runtime_fork.is_own_runtime(args.runtime) and runtime_fork.preload()
    monitor = Monitor(args.socket, Runtime(args.runtime, args.runtime_root, in_process))
    monitor.take_over()  # before "ready": the command that restarted us then sees the ports served
    print("ready", flush=True)  # the starter waits for this line, then stops reading
    log_fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(log_fd, 1)
    os.close(log_fd)
    try:
        monitor.serve(listener)
    finally:
        args.socket.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
