"""Fixtures for engine tests: a hostrt root holding the busybox image built from images/,
and a helper that runs the `hostrt` CLI against it as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _runtime() -> str:
    """hostrt's own runtime unless HOSTRT_TEST_RUNTIME names another runc-compatible one."""
    return os.environ.get("HOSTRT_TEST_RUNTIME") or str(Path(sys.executable).with_name("hostrt-runtime"))


class Hostrt:
    """Runs `python -m hostrt ...` with one root; returns the completed process."""

    def __init__(self, root: Path, runtime: str) -> None:
        self.root = root
        self.env = {**os.environ, "HOSTRT_ROOT": str(root), "HOSTRT_RUNTIME": runtime}

    def __call__(self, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hostrt", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)

    def ok(self, *args: str, timeout: float = 120) -> str:
        done = self(*args, timeout=timeout)
        assert done.returncode == 0, f"hostrt {' '.join(args)} failed ({done.returncode}): {done.stderr}"
        return done.stdout

    def read(self, path: str) -> str:
        """A file where the containers run (here: this host's)."""
        return Path(path).read_text()


class GuestHostrt(Hostrt):
    """The same CLI with `run` and `create` sent to the lightvm machine (`--backend lightvm`),
    whose guest is a cgroup v2 host; `read` reads the guest's files."""

    def __init__(self, guest) -> None:  # noqa: ANN001 - tests.cgroup_envs.V2Guest
        super().__init__(guest.engine.root, guest.engine.env["HOSTRT_RUNTIME"])
        self.guest = guest

    def __call__(self, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
        if args and args[0] in ("run", "create"):
            args = (args[0], "--backend", "lightvm", *args[1:])
        return super().__call__(*args, timeout=timeout, input=input)

    def read(self, path: str) -> str:
        return self.guest.read(path)


@pytest.fixture(scope="session")
def engine_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("containers need root")
    if not Path("/bin/busybox").exists() and not shutil.which("apt-get"):
        pytest.skip("the busybox recipe needs busybox-static from Debian")
    root = tmp_path_factory.mktemp("engine-root")
    hostrt = Hostrt(root, _runtime())
    hostrt.ok("image", "build", str(REPO / "images" / "busybox"), timeout=600)
    yield root
    for record in (root / "containers").glob("*/record.json"):
        hostrt("rm", "-f", record.parent.name)
    subprocess.run(["pkill", "-f", "--", f"--socket {root}"], capture_output=True)


@pytest.fixture
def hostrt(cgroup_env: str, request: pytest.FixtureRequest) -> Hostrt:
    """The CLI on this host's root; for the guest run of a `cgroups` test, on the machine's."""
    if cgroup_env != "host":
        return GuestHostrt(request.getfixturevalue("v2_guest"))
    return Hostrt(request.getfixturevalue("engine_root"), _runtime())
