"""The monitor outlives whatever its clients and containers do — a client stopped in the
middle of its request, a client killed in the middle of a start, a disk filled by a
container's output — so that detached containers keep the reader of their output (without
it they die of SIGPIPE) and their exit codes are still recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt, _runtime

pytestmark = pytest.mark.root

# Counts for 12 s (longer than the monitor gives a client to send its request), then exits 5.
COUNTER = "i=0; while [ $i -lt 48 ]; do echo line $i; i=$((i+1)); sleep 0.25; done; exit 5"


def monitor_pid(root: Path) -> int | None:
    from hostrt import context

    wanted = f"--socket\0{root / 'run' / f'monitor-{context.key()}.sock'}\0".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"hostrt.engine.monitor" in cmdline and wanted in cmdline:
                return int(entry.name)
    return None


def stopped_hostrt_processes() -> set[int]:
    """hostrt clients and engine server workers stopped (state T)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, IndexError):
                continue
            if state == "T" and (b"hostrt.server" in cmdline or b"-m\0hostrt\0" in cmdline):
                found.add(int(entry.name))
    return found


def logged_lines(hostrt: Hostrt, name: str) -> list[str]:
    return hostrt.ok("logs", name).splitlines()


def test_a_stopped_client_stalls_neither_the_monitor_nor_its_containers(hostrt: Hostrt) -> None:
    hostrt.ok("run", "-d", "--network", "none", "--name", "counter-stopped", "busybox", "sh", "-c", COUNTER)
    monitor = monitor_pid(hostrt.root)
    before = stopped_hostrt_processes()
    stopped = subprocess.Popen([sys.executable, "-m", "hostrt", "run", "-d", "--network", "none", "busybox", "true"],
                               env={**hostrt.env, "HOSTRT_FAILPOINT": "monitor-connected:stop"},
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not stopped_hostrt_processes() - before:
            assert time.monotonic() < deadline, "the client never reached the monitor"
            time.sleep(0.05)
        began = time.monotonic()
        hostrt.ok("run", "-d", "--network", "none", "--name", "beside-stopped", "busybox", "true")
        served_in = time.monotonic() - began
        assert hostrt.ok("wait", "counter-stopped", timeout=60).strip() == "5"
        assert logged_lines(hostrt, "counter-stopped") == [f"line {i}" for i in range(48)]
        assert monitor_pid(hostrt.root) == monitor, "the same monitor served throughout"
        assert served_in < 8, "another client's start does not wait for the stopped one"
    finally:
        for pid in stopped_hostrt_processes() - before:
            os.kill(pid, signal.SIGKILL)
        stopped.kill()
        stopped.wait()
        hostrt("rm", "-f", "counter-stopped", "beside-stopped")


def test_a_client_killed_in_the_middle_of_a_start_leaves_a_supervised_container(hostrt: Hostrt) -> None:
    hostrt.ok("run", "-d", "--network", "none", "--name", "counter-before", "busybox", "sh", "-c", COUNTER)
    monitor = monitor_pid(hostrt.root)
    killed = subprocess.run([sys.executable, "-m", "hostrt", "run", "-d", "--network", "none", "--name", "orphaned",
                             "busybox", "sh", "-c", COUNTER.replace("exit 5", "exit 6")],
                            env={**hostrt.env, "HOSTRT_FAILPOINT": "monitor-request-sent"}, capture_output=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert killed.returncode in (-9, 137), killed.stderr
    try:
        assert hostrt.ok("wait", "counter-before", timeout=60).strip() == "5"
        assert logged_lines(hostrt, "counter-before") == [f"line {i}" for i in range(48)]
        assert monitor_pid(hostrt.root) == monitor, "the same monitor served throughout"
        state = json.loads(hostrt.ok("inspect", "orphaned"))[0]["State"]
        assert state["Status"] in ("running", "exited"), "the monitor started it; the record says so"
        assert hostrt.ok("wait", "orphaned", timeout=60).strip() == "6"
        assert logged_lines(hostrt, "orphaned") == [f"line {i}" for i in range(48)]
    finally:
        hostrt("rm", "-f", "orphaned", "counter-before")


@pytest.fixture
def full_disk_root(engine_root: Path) -> Iterator[Hostrt]:
    """A hostrt root on a 16 MiB tmpfs holding the busybox image and little room besides."""
    mountpoint = Path(tempfile.mkdtemp(prefix="hostrt-fulldisk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mountpoint)], check=True)
    hostrt = Hostrt(mountpoint / "root", _runtime())
    try:
        hostrt.root.mkdir()
        subprocess.run(["cp", "-a", str(engine_root / "store"), str(hostrt.root / "store")], check=True)
        hostrt.ok("run", "--rm", "--network", "none", "busybox", "true")  # unpacks the layer
        yield hostrt
    finally:
        for record in (hostrt.root / "containers").glob("*/record.json"):
            hostrt("rm", "-f", record.parent.name)
        subprocess.run(["pkill", "-f", "--", f"--socket {hostrt.root}"], capture_output=True)
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)
        mountpoint.rmdir()


def test_a_full_disk_drops_output_but_keeps_the_container_and_its_exit_code(full_disk_root: Hostrt) -> None:
    hostrt = full_disk_root
    # Some 20 MB of log for a disk with a few left; then it still works, and says so.
    flood = "yes " + "x" * 200 + " | head -n 100000; sleep 1; echo still here; exit 7"
    cid = hostrt.ok("run", "-d", "--network", "none", "busybox", "sh", "-c", flood).strip()
    monitor = monitor_pid(hostrt.root)
    assert hostrt.ok("wait", cid, timeout=120).strip() == "7", "it ran to its end, and its end is recorded"
    state = json.loads(hostrt.ok("inspect", cid))[0]["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 7)
    assert monitor_pid(hostrt.root) == monitor, "the same monitor served throughout"
    log = (hostrt.root / "containers" / cid / "container.log").read_text()
    assert log.startswith('{"log": "' + "x" * 200), "output was logged until the disk was full"
    assert all(json.loads(line) for line in log.splitlines()), "no line of the log was cut short"
    hostrt.ok("rm", cid)
    # The same monitor takes the next container once there is room again.
    assert hostrt.ok("run", "-d", "--network", "none", "busybox", "sh", "-c", "echo fine")
    assert monitor_pid(hostrt.root) == monitor


def test_a_request_the_monitor_answers_at_once_never_fails_on_a_broken_pipe(hostrt: Hostrt) -> None:
    """A start the monitor refuses at once (a busy published port) was answered, and its
    connection closed, before the client's trailing empty send: EPIPE, which the CLI turned
    into a silent exit 1 instead of 125 and the reason. A race, so it is tried many times by
    a client that runs only when the monitor does not (SCHED_IDLE, on the monitor's CPU)."""
    from hostrt import context

    container = hostrt.ok("run", "-d", "--network", "none", "busybox", "sleep", "60").strip()
    sock = hostrt.root / "run" / f"monitor-{context.key()}.sock"
    monitor = monitor_pid(hostrt.root)
    assert monitor is not None
    cpus = os.sched_getaffinity(monitor)
    cpu = min(cpus & os.sched_getaffinity(0))
    script = f"""
import os, sys
from hostrt.engine.monitor_client import _send
os.sched_setaffinity(0, {{{cpu}}})
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
lock, broken = os.open({str(hostrt.root)!r}, os.O_RDONLY), 0
for _ in range(2000):
    try:
        assert _send({str(sock)!r}, {{"op": "start"}}, 10, lock_fd=lock)["ok"] is False  # refused at once: no id
    except BrokenPipeError:
        broken += 1
print(broken)
"""
    os.sched_setaffinity(monitor, {cpu})
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert (done.returncode, done.stdout) == (0, "0\n"), (done.stdout, done.stderr)
    finally:
        os.sched_setaffinity(monitor, cpus)
        hostrt("rm", "-f", container)
