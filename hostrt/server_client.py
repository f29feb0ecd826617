"""Hand one `hostrt` command to the resident engine server (hostrt.server) and relay it.

Importing typer, pydantic and the engine costs more than running a container; a server
that has them loaded forks a worker per command instead. This side stays as small as the
interpreter allows: modules written in C only (`socket` and `signal` import enum, `json`
imports re). It passes its stdin, stdout and stderr to the worker as file descriptors, so output,
terminals and pipes behave as if the worker were this process; it forwards the signals a
user sends (Ctrl-C, SIGTERM, window size changes) and ends the way the worker ended: with
its exit code, or killed by the same signal. The protocol is private to one installation.
"""

from __future__ import annotations

import os
import sys

import _signal
import _socket

PROTOCOL = b"hostrt-server-2"
DISABLE_VARIABLE = "HOSTRT_SERVER"  # "0": every command runs in its own process, no server
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1,
                     _signal.SIGUSR2, _signal.SIGWINCH)
# Dispositions a process inherits: a shell's background job ignores SIGINT and SIGQUIT, and
# what hostrt ignores its containers ignore too. The worker starts with the same ones.
INHERITED_SIGNALS = (*FORWARDED_SIGNALS, _signal.SIGPIPE, _signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU)


def server_key() -> str:
    """Which installation a server serves: its code directory and its environment (sys.prefix:
    `python` and `python3` of one venv are one installation)."""
    import zlib

    code_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return f"{zlib.crc32(f'{code_dir}|{sys.prefix}'.encode()):08x}"


def socket_dir() -> str:
    """A directory only this user can enter: the socket runs commands as that user."""
    uid = os.geteuid()
    if uid == 0 and "HOSTRT_ROOTLESS_UID" in os.environ:  # a rootless user's server (hostrt/rootless)
        uid = int(os.environ["HOSTRT_ROOTLESS_UID"])
    elif uid == 0:
        return "/run/hostrt-server"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    return f"{runtime_dir}/hostrt-server" if runtime_dir else f"/tmp/hostrt-server-{uid}"


def socket_path() -> str:
    return f"{socket_dir()}/{server_key()}.sock"


def enabled() -> bool:
    return os.environ.get(DISABLE_VARIABLE, "1") != "0" and sys.platform.startswith("linux")


def _private_dir(path: str) -> bool:
    """The socket's directory belongs to this user and nobody else can reach into it."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and (st.st_mode & 0o077) == 0 and (st.st_mode & 0o170000) == 0o040000


def ignored_signals() -> list[int]:
    # SIGPIPE is ignored by the interpreter itself, not inherited: it is the default here.
    return [signum for signum in INHERITED_SIGNALS
            if signum != _signal.SIGPIPE and _signal.getsignal(signum) == _signal.SIG_IGN]


def resource_limits() -> bytes:
    """Every rlimit as `resource:soft:hard,...`: a container inherits what its spec does not set
    (core size, stack, ...) from hostrt, so the worker takes this process's limits."""
    import resource

    limits = []
    for number in range(getattr(resource, "RLIM_NLIMITS", 16)):
        try:
            soft, hard = resource.getrlimit(number)
        except (ValueError, OSError):
            continue
        limits.append(b"%d:%d:%d" % (number, soft, hard))
    return b",".join(limits)


def _request(args: list[str], ignored_signals: list[int]) -> bytes:
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        cwd = os.fsencode(os.getcwd())
    except OSError:
        cwd = b"/"
    ignored = b",".join(b"%d" % signum for signum in ignored_signals)
    fields = [PROTOCOL, server_key().encode(), cwd, b"%d" % umask, ignored, resource_limits(), b"%d" % len(args),
              *map(os.fsencode, args), *(key + b"=" + value for key, value in os.environb.items())]
    body = b"\0".join(fields)
    return b"%d\n" % len(body) + body


def _stdio_fds() -> list[int]:
    """fds 0-2 as they are; a closed one is replaced by /dev/null, as the worker needs three."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def delegate(args: list[str]) -> int | None:
    """Run `hostrt ARGS` in the server and return its exit code; None when no server took it
    (none running, another installation's, stale code): the caller runs it itself."""
    if not enabled() or not _private_dir(socket_dir()):
        return None
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.connect(socket_path())
        ignored = ignored_signals()  # one reading: what the worker ignores is what is not forwarded
        request = _request(args, ignored)
        sent = conn.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _fd_array(_stdio_fds()))])
        if sent < len(request):  # an empty send fails (EPIPE) once a refusing server has hung up
            conn.sendall(request[sent:])
    except OSError:
        conn.close()
        return None
    return _relay(conn, ignored)


def _fd_array(fds: list[int]) -> bytes:
    import array

    return array.array("i", fds).tobytes()


def _relay(conn: _socket.socket, ignored: list[int]) -> int | None:
    """Forward signals until the server reports how the worker ended."""

    def forward(signum: int, _frame: object) -> None:
        try:
            conn.send(b"s%d\n" % signum)
        except OSError:
            pass

    previous = {signum: _signal.signal(signum, forward) for signum in FORWARDED_SIGNALS if signum not in ignored}
    reply = b""
    try:
        while not reply.endswith(b"\n"):
            chunk = conn.recv(64)
            if not chunk:
                break
            reply += chunk
    finally:
        for signum, handler in previous.items():
            _signal.signal(signum, handler)
        conn.close()
    if reply.startswith(b"n"):  # refused before it started (stale code): run it here
        return None
    if not reply.startswith(b"x"):
        print("hostrt: error: the engine server stopped before the command ended", file=sys.stderr)
        return 125
    code = int(reply[1:])
    if code < 0:  # the worker was killed by a signal: end the same way
        if -code != _signal.SIGKILL:
            _signal.signal(-code, _signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def exit_now(code: int) -> None:
    """End this process without the interpreter's teardown (a few ms): the worker did the
    work, there is nothing of ours to finalise."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def spawn_server() -> None:
    """Start a server in the background for the next commands, unless one holds the lock
    (running or starting). This command does not wait for it."""
    if not enabled():
        return
    import fcntl

    directory = socket_dir()
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return
    if not _private_dir(directory):
        return
    lock_path = f"{socket_path()[:-5]}.lock"
    try:
        lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        return  # a server holds it
    os.close(lock)  # the server takes it for its lifetime
    import subprocess

    with open(f"{directory}/server.log", "ab") as log:
        os.fchmod(log.fileno(), 0o600)
        subprocess.Popen([sys.executable, "-m", "hostrt.server", "--socket", socket_path(), "--lock", lock_path],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
                         close_fds=True, cwd="/")
