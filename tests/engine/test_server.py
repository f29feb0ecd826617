"""The engine server runs `hostrt` commands in forks of one loaded process: a command run
through it must behave as the same command run in its own process — output, exit codes,
stdin, signals, a killed client — and nobody else may use it."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostrt import server, server_client
from tests.engine.conftest import Hostrt

pytestmark = pytest.mark.root


def _server_pid() -> int | None:
    found = subprocess.run(["pgrep", "-f", f"hostrt.server --socket {server_client.socket_path()}"],
                           capture_output=True, text=True).stdout.split()
    return int(found[0]) if found else None


def _children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


@pytest.fixture
def served(hostrt: Hostrt) -> int:
    """The pid of a running server for this installation (started by a first command) that
    serves this test's context (one started from another context gives way once its own
    callers have been quiet for server.YIELD_SECONDS)."""
    from hostrt import context

    deadline = time.monotonic() + getattr(server, "YIELD_SECONDS", 0.0) + 60
    while time.monotonic() < deadline:
        hostrt.ok("ps")
        pid = _server_pid()
        if pid and Path(server_client.socket_path()).exists() and context.of(pid) == context.of("self"):
            return pid
        time.sleep(0.5)
    raise AssertionError("no engine server came up in this context")


def test_commands_behave_the_same_through_the_server(hostrt: Hostrt, served: int) -> None:
    direct = Hostrt(hostrt.root, hostrt.env["HOSTRT_RUNTIME"])
    direct.env["HOSTRT_SERVER"] = "0"
    cases = [("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7"),
             ("run", "--rm", "--network", "none", "busybox", "nosuch"),
             ("inspect", "no-such-container"),
             ("run", "--rm", "-i", "--network", "none", "busybox", "tr", "a-z", "A-Z")]
    for args in cases:
        via_server, own = hostrt(*args, input="hello\n"), direct(*args, input="hello\n")
        assert (via_server.returncode, via_server.stdout, via_server.stderr) == \
            (own.returncode, own.stdout, own.stderr), args
    assert hostrt("run", "--rm", "-i", "--network", "none", "busybox", "tr", "a-z", "A-Z",
                  input="hello\n").stdout == "HELLO\n"


def test_the_command_lines_resource_limits_reach_the_container(hostrt: Hostrt, served: int) -> None:
    """What the spec does not set, a container inherits from hostrt: from the command line's
    limits, not the server's."""
    import resource

    def small_stack() -> None:
        resource.setrlimit(resource.RLIMIT_STACK, (3072 * 1024, resource.RLIM_INFINITY))

    for env in (hostrt.env, {**hostrt.env, "HOSTRT_SERVER": "0"}):
        done = subprocess.run([sys.executable, "-m", "hostrt", "run", "--rm", "--network", "none", "busybox", "sh",
                               "-c", "ulimit -s"], env=env, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, preexec_fn=small_stack)
        assert (done.returncode, done.stdout) == (0, "3072\n"), done.stderr


def test_signals_reach_the_container_and_a_killed_client_ends_its_command(hostrt: Hostrt, served: int) -> None:
    script = 'trap "exit 3" TERM; sleep 100 & wait'
    client = subprocess.Popen([sys.executable, "-m", "hostrt", "run", "--rm", "--network", "none", "busybox", "sh",
                               "-c", script], env=hostrt.env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not _children(served) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _children(served), "the command did not run in a worker of the server"
    time.sleep(1.5)  # the container's shell has set its trap
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=30) == 3

    cid = hostrt.ok("run", "-d", "--network", "none", "busybox", "sleep", "100").strip()
    try:
        follower = subprocess.Popen([sys.executable, "-m", "hostrt", "logs", "-f", cid], env=hostrt.env,
                                    stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not _children(served) and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = _children(served)
        assert workers
        follower.kill()  # as SIGKILL ends a command run in its own process, it ends its worker
        follower.wait()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    finally:
        hostrt("rm", "-f", cid)


def test_the_socket_is_private_to_its_user(served: int) -> None:
    directory = os.stat(server_client.socket_dir())
    assert directory.st_uid == os.geteuid() and directory.st_mode & 0o077 == 0
    assert os.stat(server_client.socket_path()).st_mode & 0o077 == 0


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory any user can reach (pytest's tmp_path is under a 0700 directory)."""
    directory = Path(tempfile.mkdtemp(prefix="hostrt-server-test-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def _serve_once(directory: Path, fingerprint: int | None = None) -> tuple[server.Server, int]:
    """A server on a world-writable socket in `directory`, run by a forked child of this test
    that answers or refuses one request (and gives up after 20 s)."""
    path = str(directory / "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o777)
    listener.listen(8)
    listener.settimeout(20)
    lock = os.open(str(directory / "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    instance = server.Server(listener, path, lock)
    if fingerprint is not None:
        instance.fingerprint = fingerprint
    pid = os.fork()
    if pid == 0:
        try:
            instance.selector.register(listener, 1)
            instance._accept()
        finally:
            os._exit(0)
    listener.close()
    os.close(lock)
    return instance, pid


def _ask(path: str, as_uid: int | None = None, unshare_flags: int = 0) -> bytes:
    """Send a well-formed request for `--version`-like work from a forked child: as this process,
    as another user, or after unsharing namespaces (b"unsupported" if this kernel cannot)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if as_uid is not None:
                os.setuid(as_uid)
            if unshare_flags and ctypes.CDLL(None, use_errno=True).unshare(unshare_flags) != 0:
                os.write(writer, b"unsupported")
                os._exit(0)
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(path)
            request = server_client._request(["version"], [])
            socket.send_fds(conn, [request], [0, 1, 2])
            os.write(writer, conn.recv(64))
        finally:
            os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    with os.fdopen(reader, "rb") as replies:
        return replies.read()


def test_another_user_is_refused(reachable_dir: Path) -> None:
    instance, pid = _serve_once(reachable_dir)
    assert _ask(instance.path, as_uid=65534) == b"n\n"
    os.waitpid(pid, 0)


def test_a_server_whose_code_changed_refuses_and_stops_listening(reachable_dir: Path) -> None:
    instance, pid = _serve_once(reachable_dir, fingerprint=server.code_fingerprint() + 1)
    assert _ask(instance.path) == b"n\n"
    os.waitpid(pid, 0)
    assert not Path(instance.path).exists()


def test_the_fingerprint_follows_the_code(tmp_path: Path) -> None:
    for package in ("hostrt", "backends"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "a.py").write_text("x = 1\n")
    before = server.code_fingerprint(tmp_path)
    os.utime(tmp_path / "backends" / "a.py", ns=(0, 10**9))
    assert server.code_fingerprint(tmp_path) != before
