"""The monitor SIGKILLed while it serves published ports: the containers keep running, and the
next hostrt command restarts it and their ports are served again; `port` and `ps` tell the truth."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt
from tests.network.conftest import container_dir, free_port, http_get

pytestmark = pytest.mark.root
HTTPD = ["sh", "-c", "mkdir -p /www && echo served-by-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"]


def get(port: int, timeout: float = 10) -> str:
    return http_get(f"http://127.0.0.1:{port}/", timeout)


def refused(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
    except OSError:
        return True
    return False


def monitor_pid(root: Path) -> int | None:
    """The monitor daemon of this hostrt root, found by its command line."""
    from hostrt import context

    wanted = f"--socket\0{root / 'run' / f'monitor-{context.key()}.sock'}\0".encode()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"hostrt.engine.monitor" in (cmdline := (entry / "cmdline").read_bytes()) \
                    and wanted in cmdline:
                return int(entry.name)
        except OSError:
            continue
    return None


def kill_and_wait(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    for _ in range(200):  # until the host's init has collected it
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not go")


def status(hostrt: Hostrt, name: str) -> str:
    return next(c["status"] for c in json.loads(hostrt.ok("ps", "-a", "--format", "json")) if c["name"] == name)


def test_published_ports_come_back_after_the_monitor_is_killed(hostrt: Hostrt) -> None:
    port = free_port()
    hostrt.ok("run", "-d", "--name", "taken", "-h", "takenhost", "-p", f"127.0.0.1:{port}:80", "busybox", *HTTPD)
    try:
        assert get(port) == "served-by-takenhost\n"
        old = monitor_pid(hostrt.root)
        assert old is not None
        kill_and_wait(old)
        assert refused(port), "the killed monitor took its listeners along"

        assert status(hostrt, "taken") == "running", "the container itself kept running"
        assert get(port) == "served-by-takenhost\n", "the next command restarted the monitor, which serves the port again"
        assert monitor_pid(hostrt.root) not in (None, old)
        assert hostrt.ok("port", "taken") == f"80/tcp -> 127.0.0.1:{port}\n"

        hostrt.ok("stop", "-t", "1", "taken")
        assert status(hostrt, "taken") == "exited"
        for _ in range(50):  # the new monitor sees the end through a pidfd (the container is not its child)
            if refused(port):
                break
            time.sleep(0.1)
        assert refused(port)
        assert hostrt.ok("port", "taken") == ""
    finally:
        hostrt("rm", "-f", "taken")


def test_a_container_that_ended_with_its_monitor_shows_no_ports(hostrt: Hostrt) -> None:
    port = free_port()
    hostrt.ok("run", "-d", "--name", "gone", "-p", f"127.0.0.1:{port}:80", "busybox", *HTTPD)
    try:
        get(port)
        init = int((container_dir(hostrt.root, "gone") / "init.pid").read_text())
        kill_and_wait(monitor_pid(hostrt.root))  # type: ignore[arg-type]
        kill_and_wait(init)
        assert status(hostrt, "gone") == "exited"
        assert hostrt.ok("port", "gone") == ""
        assert json.loads(hostrt.ok("inspect", "gone"))[0]["NetworkSettings"]["Ports"] == {}
        assert refused(port)
    finally:
        hostrt("rm", "-f", "gone")
