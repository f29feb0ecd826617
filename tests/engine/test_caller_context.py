"""A command runs in its caller's context — mount, network and PID namespaces, root directory,
cgroup — even while the engine server (a process of another context) is up: the server
serves only callers of its own context, the others run their command themselves; detached
containers get a monitor of their caller's context. Each test first makes sure a server runs,
or it would prove nothing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.conftest import REPO, Hostrt
from tests.engine.test_server import served  # noqa: F401 - the fixture: a running engine server

pytestmark = pytest.mark.root

HTTPD = ["sh", "-c", "mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 80 -h /www"]


def _hostrt_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hostrt", *args]


def _find(marker: str, timeout: float = 30) -> int:
    """The pid (in this PID namespace) of the container's shell whose command line holds `marker`
    (the hostrt client's holds it too, after other words)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
                if cmdline.startswith(b"sh\0") and marker.encode() in cmdline:
                    return int(entry.name)
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no process runs {marker}")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _sleeper(marker: str) -> list[str]:
    """A container command that is easy to find: a shell whose command line holds `marker`."""
    return ["busybox", "sh", "-c", f"sleep 4; : {marker}"]


def test_a_command_of_the_servers_context_still_runs_in_the_server(hostrt: Hostrt, served: int) -> None:  # noqa: F811
    marker = f"same-{uuid.uuid4().hex}"
    client = subprocess.Popen(_hostrt_argv("run", "--rm", "--network", "none", *_sleeper(marker)), env=hostrt.env,
                              stdin=subprocess.DEVNULL)
    try:
        supervisor = _parent(_find(marker))
        assert _parent(supervisor) == served, "the command did not run in a worker of the server"
    finally:
        assert client.wait(timeout=60) == 0


def test_a_bind_mount_from_the_callers_mount_namespace(hostrt: Hostrt, served: int, tmp_path: Path) -> None:  # noqa: F811
    """The issue's reproduction: a file that exists only in the caller's mount namespace."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f'mount -t tmpfs tmpfs {mnt} && echo only-here > {mnt}/f && exec "$@"'
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh",
                           *_hostrt_argv("run", "--rm", "--network", "none", "-v", f"{mnt}/f:/f", "busybox", "cat", "/f")],
                          env=hostrt.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (0, "only-here\n"), done.stderr


@pytest.fixture
def chroot_dir(tmp_path: Path) -> Iterator[Path]:
    """A root directory with the system, this checkout, its Python and /run (so the server's
    socket is reachable) bind-mounted, in this mount namespace: only the root differs."""
    top = tmp_path / "chroot"
    top.mkdir()
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            (top / name).symlink_to(os.readlink(f"/{name}"))
    sources = ["/usr", "/etc", "/proc", "/dev", "/sys", "/run", str(REPO), sys.base_prefix, sys.prefix]
    mounted = []
    try:
        for source in dict.fromkeys(sources):
            target = top / source.lstrip("/")
            if any(target.is_relative_to(done) for done in mounted):
                continue
            target.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "--rbind", source, str(target)], check=True)
            subprocess.run(["mount", "--make-rslave", str(target)], check=True)
            mounted.append(target)
        yield top
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-R", "-l", str(target)], check=False)


def test_a_command_in_a_chroot_works_in_that_root(hostrt: Hostrt, served: int, chroot_dir: Path) -> None:  # noqa: F811
    """Directories the command makes land under the caller's root, not the server's."""
    name = f"hostrt-ctx-{uuid.uuid4().hex[:12]}"
    env = {**hostrt.env, "HOSTRT_ROOT": f"/{name}"}
    try:
        done = subprocess.run(["chroot", str(chroot_dir), *_hostrt_argv("ps")], env=env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        assert (chroot_dir / name).is_dir() and not Path(f"/{name}").exists()
    finally:
        subprocess.run(["rm", "-rf", f"/{name}"], check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"hostrt-ctx-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _connects(port: int, netns: str | None = None) -> bool:
    code = (f"import socket,sys; c=socket.create_connection(('127.0.0.1',{port}),timeout=3); "
            "c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); sys.exit(0 if b'served' in c.makefile('rb').read() else 1)")
    argv = [sys.executable, "-c", code]
    return subprocess.run(["ip", "netns", "exec", netns, *argv] if netns else argv, capture_output=True,
                          timeout=30).returncode == 0


def _kill_monitors_in(root: Path, netns: str) -> None:
    """The monitor started for the test's network namespace (it would idle out after a minute)."""
    target = os.stat(f"/run/netns/{netns}").st_ino
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"hostrt.engine.monitor" in cmdline and str(root).encode() in cmdline \
                    and os.stat(entry / "ns" / "net").st_ino == target:
                os.kill(int(entry.name), 9)
        except (OSError, ValueError):
            continue


def test_ports_are_published_in_the_callers_network_namespace(hostrt: Hostrt, served: int, netns: str) -> None:  # noqa: F811
    """Even while a monitor of the server's context watches a detached container: the one
    started from the test's network namespace gets a monitor there."""
    port = _free_port()
    in_ns = ["ip", "netns", "exec", netns]
    name = f"ctx-{uuid.uuid4().hex[:12]}"
    here = hostrt.ok("run", "-d", "--network", "none", "busybox", "sleep", "60").strip()
    done = subprocess.run([*in_ns, *_hostrt_argv("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80",
                                                 "busybox", *HTTPD)],
                          env=hostrt.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    try:
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 20
        while not _connects(port, netns) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _connects(port, netns), "the port is not served in the caller's network namespace"
        assert not _connects(port), "the port is served in the server's network namespace"
    finally:
        subprocess.run([*in_ns, *_hostrt_argv("rm", "-f", name)], env=hostrt.env, capture_output=True, timeout=120)
        hostrt("rm", "-f", here)
        _kill_monitors_in(hostrt.root, netns)


def test_containers_are_created_in_the_callers_pid_namespace(hostrt: Hostrt, served: int) -> None:  # noqa: F811
    """The container's init is a descendant of the caller's PID namespace: one more level in
    its NSpid than the caller's own."""
    marker = f"pidns-{uuid.uuid4().hex}"
    argv = ["unshare", "-p", "-f", "--mount-proc",
            *_hostrt_argv("run", "--rm", "--network", "none", *_sleeper(marker))]
    client = subprocess.Popen(argv, env=hostrt.env, stdin=subprocess.DEVNULL)
    try:
        init = _find(marker)
        levels = [line for line in Path(f"/proc/{init}/status").read_text().splitlines()
                  if line.startswith("NSpid:")][0].split()[1:]
        assert len(levels) == 3, f"NSpid {levels}: the container's PID namespace is not inside the caller's"
    finally:
        assert client.wait(timeout=60) == 0


def test_a_pid_namespace_without_its_own_proc_is_refused_in_one_line(hostrt: Hostrt, served: int) -> None:  # noqa: F811
    """`unshare -p -f` without --mount-proc: /proc shows the outer namespace, where the
    container's pid would name another process. One line, 125, and no container left."""
    name = f"pidns-{uuid.uuid4().hex[:12]}"
    argv = ["unshare", "-p", "-f", *_hostrt_argv("run", "--rm", "--name", name, "--network", "none", "busybox", "true")]
    done = subprocess.run(argv, env=hostrt.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 125, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "/proc is not this PID namespace's" in lines[0], done.stderr
    assert name not in hostrt.ok("ps", "-a", "--format", "{{.Names}}").split()


@pytest.fixture
def child_cgroup() -> Iterator[Path]:
    """A new cgroup of the pids hierarchy (v1) or of the unified one (v2), removed afterwards."""
    base = Path("/sys/fs/cgroup/pids")
    if not base.is_dir():
        base = Path("/sys/fs/cgroup")
    if not (base / "cgroup.procs").exists():
        pytest.skip("no writable pids or unified cgroup hierarchy here")
    own = [line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
           if line.split(":", 2)[1] in ("pids", "")][0]
    directory = base / own.lstrip("/") / f"hostrt-ctx-{uuid.uuid4().hex[:12]}"
    directory.mkdir()
    try:
        yield directory
    finally:
        for _ in range(50):
            try:
                directory.rmdir()
                break
            except OSError:
                time.sleep(0.2)


def test_what_a_command_starts_stays_in_the_callers_cgroup(hostrt: Hostrt, served: int, child_cgroup: Path) -> None:  # noqa: F811
    marker = f"cgroup-{uuid.uuid4().hex}"

    def enter() -> None:
        (child_cgroup / "cgroup.procs").write_text("0")

    client = subprocess.Popen(_hostrt_argv("run", "--rm", "--network", "none", *_sleeper(marker)), env=hostrt.env,
                              stdin=subprocess.DEVNULL, preexec_fn=enter)
    try:
        supervisor = _parent(_find(marker))
        members = (child_cgroup / "cgroup.procs").read_text().split()
        assert str(supervisor) in members, "the process running the command left the caller's cgroup"
        # As root the server's worker may join the caller's cgroups: the command keeps the fast path.
        assert _parent(supervisor) == served, "the command did not run in a worker of the server"
    finally:
        assert client.wait(timeout=60) == 0


def test_a_worker_that_cannot_join_the_callers_cgroups_says_so() -> None:
    from hostrt import cgroup_join

    own = Path("/proc/self/cgroup").read_text()
    assert cgroup_join.join(own)
    assert not cgroup_join.join("99:no-such-controller:/hostrt-ctx\n")
    assert Path("/proc/self/cgroup").read_text() == own


def test_a_monitor_refuses_a_sender_of_another_context(hostrt: Hostrt) -> None:
    """One that reaches another context's monitor socket (the socket's name is only a hint) is
    told so: the monitor would create its container in the wrong namespaces."""
    container = hostrt.ok("run", "-d", "--network", "none", "busybox", "sleep", "60").strip()
    try:
        from hostrt import context

        sockets = [hostrt.root / "run" / f"monitor-{context.key()}.sock"] if context.key() else []
        sockets = [path for path in sockets if path.exists()] or sorted((hostrt.root / "run").glob("monitor.sock"))
        assert sockets  # this context's monitor (before its sockets were named by context: the only one)
        code = ("import json,socket,sys; c=socket.socket(socket.AF_UNIX); c.connect(sys.argv[1]); "
                "c.sendall(b'{\"op\": \"ping\"}\\n'); print(c.makefile().readline(), end='')")
        for argv, ok in (([], True), (["unshare", "-n"], False)):
            done = subprocess.run([*argv, sys.executable, "-c", code, str(sockets[0])], capture_output=True, text=True,
                                  timeout=30)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["ok"] is ok, done.stdout
    finally:
        hostrt("rm", "-f", container)


CLONE_NEWNS = 0x00020000
NAMESPACE_FLAGS = {"mnt": CLONE_NEWNS, "uts": 0x04000000, "ipc": 0x08000000, "user": 0x10000000,
                   "net": 0x40000000, "cgroup": 0x02000000, "pid_for_children": 0x20000000,
                   "time_for_children": 0x00000080}


def _ask_from_new_namespace(path: str, flag: int) -> bytes:
    """A well-formed request sent from a forked child that first unshared namespace `flag`
    (0: none); b"unsupported" if this kernel cannot."""
    from tests.engine.test_server import _ask

    return _ask(path, unshare_flags=flag)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="hostrt-ctx-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory)


@pytest.mark.parametrize("kind", [None, *NAMESPACE_FLAGS])
def test_a_caller_in_any_other_namespace_runs_its_command_itself(socket_dir: Path, kind: str | None) -> None:
    """Each kind of namespace on its own (the server compares every /proc/PID/ns link; the
    *_for_children ones catch a caller that unshared without forking). The same context is served."""
    from tests.engine.test_server import _serve_once

    instance, pid = _serve_once(socket_dir)
    reply = _ask_from_new_namespace(instance.path, NAMESPACE_FLAGS[kind] if kind else 0)
    os.waitpid(pid, 0)
    if reply == b"unsupported":
        pytest.skip(f"this kernel cannot unshare a {kind} namespace")
    assert (reply == b"n\n") is (kind is not None), reply


@pytest.mark.parametrize("yield_after", [-1.0, 3600.0], ids=["own-context-quiet", "own-context-recent"])
def test_a_server_refuses_another_context_and_gives_way_once_its_own_is_quiet(
        monkeypatch: pytest.MonkeyPatch, socket_dir: Path, yield_after: float) -> None:
    """Another context's caller runs its command itself; a server whose own callers stopped
    coming a while ago then stops, so the next command starts one in the context in use."""
    from hostrt import server
    from tests.engine.test_server import _serve_once

    monkeypatch.setattr(server, "YIELD_SECONDS", yield_after, raising=False)  # before the fork: the serving child sees it
    instance, pid = _serve_once(socket_dir)
    assert _ask_from_new_namespace(instance.path, CLONE_NEWNS) == b"n\n"
    os.waitpid(pid, 0)
    # The server's state is in the forked child: what it did shows in its socket.
    assert Path(instance.path).exists() is (yield_after > 0)
