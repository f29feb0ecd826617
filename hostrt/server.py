"""The engine server: one resident process per user and installation that has the CLI, the
engine and the runtime imported, and runs each `hostrt` command in a fork of itself.

A command's own work (mount a snapshot, create a container) takes tens of milliseconds;
starting CPython and importing typer, pydantic and the engine took hundreds. The client
(hostrt.server_client) sends its arguments, working directory, umask, resource limits, ignored
signals and environment with its stdin/stdout/stderr file descriptors; the worker takes them over and runs the same
`hostrt.__main__.main` the client would have run. The server reports how the worker ended;
the worker receives the client's signals through SIGIO on the connection, and a client that
disappears (SIGKILL) takes its worker with it, as it would have taken its own process.

Only the user who owns the server may use it (the socket's directory is 0700 and each peer's
uid is checked). It serves only callers in its own namespaces and root directory
(hostrt.context, compared through the peer's pid); any other caller is told to run the
command itself, as a fork of this server would run it in the wrong namespaces. A caller in
other cgroups is served by a worker that first joins them (hostrt.cgroup_join), or, where
it may not, also runs the command itself.
A server whose own context has gone quiet gives way to a caller from another one, so that
a server started from a passing context (`ip netns exec`, a scope) does not keep the others
off the fast path. It refuses requests once its code changed on disk, so an edited or
upgraded hostrt is never served by old code, and it exits after IDLE_EXIT_SECONDS unused.
Linux only (SCM_RIGHTS, pidfds); elsewhere every command runs in its own process.
"""

from __future__ import annotations

import argparse
import gc
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass

from hostrt import context
from hostrt.server_client import FORWARDED_SIGNALS, INHERITED_SIGNALS, PROTOCOL, server_key

IDLE_EXIT_SECONDS = 600.0
# A caller from another context makes a server that served none of its own callers for this
# long stop, so that the next command starts one in the context that is in use now.
YIELD_SECONDS = 60.0
MAX_REQUEST = 4 << 20
# What a command needs, imported once before serving: each worker starts with it loaded.
# Listed from what common commands import lazily (ps, run, logs, inspect, images, info,
# machine ls, run --backend lightvm); a module missing here is imported by each worker.
PRELOAD = ("hostrt.__main__", "hostrt.cgroup_join", "hostrt.private_dirs", "hostrt.cli", "hostrt.cli_fast", "hostrt.engine.containers", "hostrt.engine.create",
           "hostrt.engine.native", "hostrt.engine.foreground", "hostrt.engine.run_cache", "hostrt.engine.console",
           "hostrt.engine.plain_records", "hostrt.engine.monitor_client", "hostrt.images.store", "hostrt.images.local",
           "hostrt.network.choice", "hostrt.network.ports", "hostrt.network.proxy", "hostrt.network.report",
           "hostrt.info", "hostrt.machine_costs", "typer._click.decorators", "typer._adapters", "pydantic.type_adapter",
           "tarfile", "statistics", "backends.lightvm.vm_backend", "backends.lightvm.machines",
           "backends.lightvm.payload", "backends.lightvm.ports", "backends.lightvm.guest_ports",
           "backends.lightvm.start_stats", "libvirt")


@dataclass
class Request:
    """One command as the client would have run it."""

    cwd: str
    umask: int
    ignored_signals: list[int]
    rlimits: list[tuple[int, int, int]]  # (resource, soft, hard)
    args: list[str]
    environ: dict[str, str]


def parse_request(body: bytes) -> Request:
    fields = body.split(b"\0")
    if fields[0] != PROTOCOL or fields[1] != server_key().encode():
        raise ValueError("another installation's client")
    ignored = [int(signum) for signum in fields[4].split(b",") if signum]
    rlimits = [tuple(int(part) for part in item.split(b":")) for item in fields[5].split(b",") if item]
    argc = int(fields[6])
    args = [os.fsdecode(arg) for arg in fields[7:7 + argc]]
    environ = {}
    for item in fields[7 + argc:]:
        key, _, value = item.partition(b"=")
        environ[os.fsdecode(key)] = os.fsdecode(value)
    return Request(cwd=os.fsdecode(fields[2]), umask=int(fields[3]), ignored_signals=ignored,
                   rlimits=rlimits, args=args, environ=environ)  # type: ignore[arg-type]


def code_fingerprint(top: str | os.PathLike[str] | None = None) -> int:
    """Names, sizes and mtimes of every module of hostrt and its runtime (about 1 ms)."""
    top = top or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    entries = []
    for package in ("hostrt", "backends"):
        for directory, subdirs, files in os.walk(os.path.join(top, package)):
            subdirs[:] = [name for name in subdirs if name != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    st = os.stat(os.path.join(directory, name))
                    entries.append((directory, name, st.st_mtime_ns, st.st_size))
    return hash(tuple(sorted(entries)))


def _read_request(conn: socket.socket) -> tuple[bytes, list[int]]:
    """The length-prefixed body and the three stdio fds sent with its first bytes."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    head, _, body = data.partition(b"\n")
    if not head.isdigit() or int(head) > MAX_REQUEST:
        raise ValueError("malformed request")
    while len(body) < int(head):
        chunk = conn.recv(min(1 << 20, int(head) - len(body)))
        if not chunk:
            raise ValueError("truncated request")
        body += chunk
    return body, fds


def _peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return uid


# -- the worker: becomes the client's command ----------------------------------------------
def _adopt(request: Request, fds: list[int]) -> None:
    """Take over the client's stdio, directory, umask, resource limits, environment and arguments."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    try:
        os.chdir(request.cwd)
    except OSError:
        os.chdir("/")
    os.umask(request.umask)
    import resource

    for number, soft, hard in request.rlimits:
        try:
            resource.setrlimit(number, (soft, hard))
        except (ValueError, OSError):
            pass  # a limit above what this process may raise to stays as it is
    os.environ.clear()
    os.environ.update(request.environ)
    sys.argv = ["hostrt", *request.args]
    unbuffered = request.environ.get("PYTHONUNBUFFERED", "") != ""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        line_buffered = fd == 2 or os.isatty(fd)
        stream = open(fd, mode, buffering=1 if line_buffered else -1, encoding="utf-8",  # noqa: SIM115
                      errors="surrogateescape" if fd != 2 else "backslashreplace", closefd=False)
        if unbuffered and fd:
            stream.reconfigure(write_through=True)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _relay_signals(conn: socket.socket) -> None:
    """Deliver the client's forwarded signals to this process (SIGIO on each message), and
    die as the client died when its end closes."""
    import fcntl

    pending = b""

    def on_io(_signum: int, _frame: object) -> None:
        nonlocal pending
        while True:
            try:
                chunk = conn.recv(4096)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                os.kill(os.getpid(), signal.SIGKILL)
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                signum = int(line[1:]) if line[:1] == b"s" and line[1:].isdigit() else 0
                if signum in FORWARDED_SIGNALS:
                    os.kill(os.getpid(), signum)

    conn.setblocking(False)
    signal.signal(signal.SIGIO, on_io)
    fcntl.fcntl(conn.fileno(), fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(conn.fileno(), fcntl.F_SETFL, fcntl.fcntl(conn.fileno(), fcntl.F_GETFL) | os.O_ASYNC)
    on_io(signal.SIGIO, None)  # what arrived before O_ASYNC was set


def _join_cgroups(conn: socket.socket, cgroups: str) -> bool:
    """Enter the caller's cgroups (a /proc/PID/cgroup text) before anything runs; where that
    is not allowed, tell the client to run the command itself."""
    from hostrt import cgroup_join

    if cgroup_join.join(cgroups):
        return True
    try:
        conn.sendall(b"n\n")
    except OSError:
        pass
    return False


def _work(conn: socket.socket, listener: socket.socket, request: Request, fds: list[int]) -> int:
    listener.close()
    for signum in INHERITED_SIGNALS:
        if signum in request.ignored_signals:
            signal.signal(signum, signal.SIG_IGN)
        elif signum != signal.SIGPIPE:  # the interpreter ignores it, in the client too
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    _adopt(request, fds)
    _relay_signals(conn)
    from hostrt.__main__ import main

    try:
        code = main(request.args)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - as the interpreter would: traceback, exit 1
        sys.excepthook(*sys.exc_info())
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    return code & 0xFF


# -- the server ----------------------------------------------------------------------------
class Server:
    def __init__(self, listener: socket.socket, path: str, lock: int) -> None:
        self.listener = listener
        self.path = path
        self.lock = lock
        self.socket_inode = os.stat(path).st_ino  # a newer server may replace the path later
        self.fingerprint = code_fingerprint()
        self.selector = selectors.DefaultSelector()
        self.workers: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, client connection)
        self.last_busy = time.monotonic()
        self.last_served = self.last_busy  # when a caller of this server's own context last came
        self.accepting = True

    def _stop_accepting(self) -> None:
        """Stale or idle: new clients run their commands themselves; running ones finish."""
        if self.accepting:
            self.accepting = False
            self.selector.unregister(self.listener)
            try:
                if os.stat(self.path).st_ino == self.socket_inode:
                    os.unlink(self.path)
            except OSError:
                pass
            self.listener.close()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        fds: list[int] = []
        try:
            conn.settimeout(5)
            body, fds = _read_request(conn)
            if _peer_uid(conn) != os.geteuid():
                raise PermissionError("another user")
            if code_fingerprint() != self.fingerprint:
                self._stop_accepting()
                raise ValueError("hostrt's code changed since this server started")
            if len(fds) != 3:
                raise ValueError("no stdio descriptors")
            request = parse_request(body)
        except (OSError, ValueError) as err:
            print(f"hostrt server: refused a request: {err}", file=sys.stderr)
            self._refuse(conn, fds)
            return
        # Checked once the request is whole: the client waits for the reply now.
        mine, theirs = context.own(), context.of(context.peer_pid(conn))
        cgroups = None  # the caller's, when they are all that differs: the worker joins them
        if mine is None or theirs is None or theirs[:-1] != mine[:-1]:
            self._refuse(conn, fds)
            if not self.workers and time.monotonic() - self.last_served > YIELD_SECONDS:
                self._stop_accepting()
            return
        if theirs[-1] != mine[-1]:
            cgroups = theirs[-1]
        self.last_served = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self._close_inherited()
            if cgroups is not None and not _join_cgroups(conn, cgroups):
                os._exit(0)
            os._exit(_work(conn, self.listener, request, fds))
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.workers[pidfd] = (pid, conn)
        self.selector.register(pidfd, selectors.EVENT_READ)

    @staticmethod
    def _refuse(conn: socket.socket, fds: list[int]) -> None:
        try:
            conn.sendall(b"n\n")  # the client runs the command itself
        except OSError:
            pass
        for fd in fds:
            os.close(fd)
        conn.close()

    def _close_inherited(self) -> None:
        """A worker keeps none of the server's descriptors: a long `logs -f` must not hold
        the lock that lets a new server start, nor other clients' connections."""
        self.selector.close()
        os.close(self.lock)
        for pidfd, (_pid, conn) in self.workers.items():
            os.close(pidfd)
            conn.close()

    def _reap(self, pidfd: int) -> None:
        pid, conn = self.workers.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        try:
            conn.sendall(b"x%d\n" % os.waitstatus_to_exitcode(status))
        except OSError:
            pass
        conn.close()
        self.last_busy = time.monotonic()

    def serve(self) -> None:
        self.selector.register(self.listener, selectors.EVENT_READ)
        while self.accepting or self.workers:
            for key, _ in self.selector.select(timeout=30):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._reap(key.fd)
            if self.accepting and not self.workers and time.monotonic() - self.last_busy > IDLE_EXIT_SECONDS:
                self._stop_accepting()


def preload() -> None:
    from hostrt.engine import runtime_fork

    for module in PRELOAD:
        try:
            __import__(module)
        except ImportError:  # an optional part (libvirt-python) is not installed
            pass
    runtime_fork.preload()
    from hostrt.cli import click_app

    click_app()


def main() -> int:
    parser = argparse.ArgumentParser(prog="hostrt.server")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--lock", required=True)
    args = parser.parse_args()
    from backends.linux_native import sealed_exe

    sealed_exe.reexec()  # workers fork container processes (runtime_fork.usable)
    import fcntl

    lock = os.open(args.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another server runs or starts
    preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{args.socket}.{os.getpid()}"
    listener.bind(staging)
    os.chmod(staging, 0o600)
    listener.listen(256)
    os.replace(staging, args.socket)  # clients see a socket only once it listens
    gc.freeze()  # the loaded modules stay shared with every worker instead of being copied
    Server(listener, args.socket, lock).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
