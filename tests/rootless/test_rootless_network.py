"""Rootless networking through the CLI as a real unprivileged user (the `rootless` fixture of
this directory's conftest): the default network is slirp4netns, -p publishes on the host's
127.0.0.1 from the monitor, a busy port fails in one line, and rm leaves no slirp4netns."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

pytest.importorskip("tests.rootless.user_env", reason="the rootless core (tests/rootless/user_env.py) is not here")

from tests.network.conftest import free_port, http_get  # noqa: E402

HTTPD = ["sh", "-c", "mkdir -p /www && echo rootless-slirp > /www/index.html && exec httpd -f -p 80 -h /www"]


def _user_processes(uid: int, word: bytes) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and proc.stat().st_uid == uid and word in (proc / "cmdline").read_bytes() \
                    and (proc / "stat").read_text().rpartition(")")[2].split()[0] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_default_network_publishes_a_port_and_rm_leaves_no_slirp4netns(rootless) -> None:  # noqa: ANN001
    name, port = f"slirp-{uuid.uuid4().hex[:8]}", free_port()
    rootless.ok("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", *HTTPD)
    try:
        assert "inet 10.0.2.100/24" in rootless.ok("exec", name, "ip", "-o", "-4", "addr", "show", "tap0")
        for _ in range(3):
            assert http_get(f"http://127.0.0.1:{port}/") == "rootless-slirp\n"
        own = os.readlink("/proc/self/ns/net")
        monitors = _user_processes(rootless.user.uid, b"hostrt.engine.monitor")
        assert monitors, "the monitor serves a detached container's ports"
        for pid in monitors:  # a thread left in the container's namespace would bind later ports there
            assert {os.readlink(f"/proc/{pid}/task/{task}/ns/net") for task in os.listdir(f"/proc/{pid}/task")} == {own}
        for detach in ([], ["-d"]):
            done = rootless.hostrt("run", *detach, "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "true")
            assert done.returncode == 125, done.stderr
            assert done.stderr.strip() == f"hostrt: error: cannot publish 127.0.0.1:{port}/tcp: Address already in use"
        assert len(_user_processes(rootless.user.uid, b"slirp4netns")) == 1, "only the first container's is left"
    finally:
        rootless.hostrt("rm", "-f", name)
    assert _user_processes(rootless.user.uid, b"slirp4netns") == []
    for directory in ("slirp", "netns"):
        path = rootless.user.runtime_dir / "hostrt" / directory
        assert not path.exists() or os.listdir(path) == []
