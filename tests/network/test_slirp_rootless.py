"""slirp4netns as a real unprivileged user: in a user namespace of that user's own (as hostrt's
rootless commands run), a container's default network is slirp4netns, slirp4netns runs with
the user's ids, the published port answers on the host's 127.0.0.1, and teardown leaves no
process, socket or namespace file."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.network.conftest import free_port
from tests.network.test_slirp import slirp_processes

USER = "hostrt-slirp"
REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="creating the unprivileged test user needs root"),
              pytest.mark.skipif(shutil.which("slirp4netns") is None, reason="slirp4netns is not installed")]


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
        return pwd.getpwnam(USER)


@pytest.fixture
def work(user: pwd.struct_passwd) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hostrt-slirp-"))
    os.chown(path, user.pw_uid, user.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unprivileged_user_gets_slirp4netns_and_its_published_port(user: pwd.struct_passwd, work: Path) -> None:
    mode = os.stat("/dev/net/tun").st_mode & 0o777 if os.path.exists("/dev/net/tun") else 0
    if mode & 0o006 != 0o006:
        pytest.skip(f"/dev/net/tun is not open to users (mode {mode:o}); ci/setup makes it 0666 as Debian's udev does")
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable  # the network modules are stdlib-only
    code = work / "code"  # a copy the user can read: the checkout may sit under a directory closed to others
    for package in ("hostrt", "backends"):
        shutil.copytree(REPO / package, code / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(Path(__file__).with_name("slirp_as_user.py"), code / "slirp_as_user.py")
    for path in [code, *code.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    port = free_port()
    done = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
                           "unshare", "--user", "--map-root-user", "--mount", python,
                           str(code / "slirp_as_user.py"), str(work), str(port)],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": user.pw_dir, "PYTHONPATH": str(code)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["in_user_namespace"] is True
    assert seen["mode"] == "slirp4netns", "the default network in a user namespace"
    assert seen["slirp_uid"] == 0, "slirp4netns runs as the user (root only inside its user namespace)"
    assert "inet 10.0.2.100/24" in seen["tap0"]
    assert seen["reply"] == "rootless-slirp\n"
    assert seen["second_reply"] == "rootless-slirp\n"
    assert seen["threads_elsewhere"] == [], "a thread of the proxy was left in the container's network namespace"
    assert seen["left"] == [], "no socket, handle or namespace file left"
    assert slirp_processes(work) == []
