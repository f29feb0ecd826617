"""Where the cgroup tests run: this host (whatever its cgroup layout; v1 hybrid on the
project's machine) and the lightvm guest, a unified cgroup v2 host that runs the same
runtime. A test marked `cgroups` runs once in each, with the same body; the guest is one
machine for the whole session (booted once, ~30 s under TCG), reached over its SSH channel.

Loaded from tests/conftest.py (pytest_plugins) so tests/native and tests/engine share it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HOST, GUEST = "host", "v2-guest"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cgroups: touches cgroups; runs on this host and in the cgroup v2 lightvm guest")


def _guest_param() -> object:
    from tests.lightvm.conftest import MACHINE_TESTS

    return pytest.param(GUEST, marks=MACHINE_TESTS, id=GUEST)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("cgroups") and "cgroup_env" in metafunc.fixturenames:
        metafunc.parametrize("cgroup_env", [pytest.param(HOST, id=HOST), _guest_param()], indirect=True)


@pytest.fixture
def cgroup_env(request: pytest.FixtureRequest) -> str:
    """HOST unless the test is marked `cgroups` and this is its guest run."""
    return getattr(request, "param", HOST)


@dataclass
class V2Guest:
    """The session's machine: an engine root whose machine "default" runs, an SSH session to
    its guest, and the directory of the runtime this checkout shipped there."""

    engine: object  # tests.engine.conftest.Hostrt
    client: object  # paramiko.SSHClient
    code: str

    def run(self, command: str, stdin: bytes | None = None, timeout: float = 120) -> tuple[int, str, str]:
        from backends.lightvm.ssh import run

        code, out, err = run(self.client, command, stdin=stdin, timeout=timeout)  # type: ignore[arg-type]
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def ok(self, command: str, stdin: bytes | None = None, timeout: float = 120) -> str:
        code, out, err = self.run(command, stdin, timeout)
        assert code == 0, f"in the guest: {command} -> {code}: {err}"
        return out

    def read(self, path: str) -> str:
        """A guest file's text; FileNotFoundError as open() would raise it."""
        code, out, err = self.run(f"cat {shlex.quote(path)}")
        if code != 0 and "No such file" in err:
            raise FileNotFoundError(path)
        assert code == 0, f"in the guest: cat {path} -> {code}: {err}"
        return out

    def exists(self, path: str) -> bool:
        return self.run(f"test -e {shlex.quote(path)}")[0] == 0

    def spawn(self, command: str):  # noqa: ANN201 - a paramiko Channel
        """A guest command left running; read with recv/recv_stderr, ends with close()."""
        channel = self.client.get_transport().open_session()  # type: ignore[attr-defined]
        channel.exec_command(command)
        return channel


@pytest.fixture(scope="session")
def v2_guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[V2Guest]:
    from backends.lightvm.machines import existing, ssh_target
    from backends.lightvm.payload import payload_dir
    from backends.lightvm.ssh import connect
    from tests.engine.conftest import REPO, Hostrt
    from tests.lightvm.conftest import _foreign_arch_missing

    native = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("dpkg") else ""
    reason = _foreign_arch_missing(native or "amd64")
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("v2-guest-root")
    (root / "cache").mkdir()
    configured = os.environ.get("HOSTRT_TEST_GUEST_CACHE")
    (root / "cache" / "guest").symlink_to(configured or tmp_path_factory.mktemp("guest-cache"))
    engine = Hostrt(root, str(Path(sys.executable).with_name("hostrt-runtime")))
    engine.ok("image", "build", str(REPO / "images" / "busybox"), timeout=600)
    try:
        engine.ok("run", "--backend", "lightvm", "--rm", "busybox", "true", timeout=900)  # boots "default"
        client = connect(ssh_target(existing(root / "machines", "default")), timeout=60)
        guest = V2Guest(engine, client, payload_dir())
        assert guest.ok("head -1 /proc/self/cgroup").strip() == "0::/", "the guest is not a cgroup v2 host"
        yield guest
        client.close()
    finally:
        engine("machine", "rm", "default", timeout=120)
