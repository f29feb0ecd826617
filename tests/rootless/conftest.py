"""Fixtures for the rootless tests: a real unprivileged user (user_env.py) running this
checkout's hostrt with its own store, and the busybox image loaded into that store.

The user's data is wiped and its processes (the namespace holder, the engine server, the
monitor, all started by these tests) are ended, by pid, before and after the session."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rootless import user_env

USER = "hostrt-rlt"  # subordinate ids from /etc/subuid
SINGLE_USER = "hostrt-rlt1"  # no subordinate ids: the single-id map
SUBIDS = 65536


@dataclass
class AsUser:
    """Runs commands as one unprivileged user with the session's hostrt on PATH."""

    user: user_env.User
    bin_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return user_env.user_environment(self.user, self.bin_dir)

    def __call__(self, *command: str, timeout: float = 120, env: dict[str, str] | None = None,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        return user_env.run_as(self.user, list(command), {**self.env, **(env or {})}, timeout=timeout, input=input)

    def hostrt(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self("hostrt", *args, timeout=timeout)

    def ok(self, *args: str, timeout: float = 120) -> str:
        done = self.hostrt(*args, timeout=timeout)
        assert done.returncode == 0, f"hostrt {' '.join(args)} as {self.user.name} failed ({done.returncode}): {done.stderr}"
        return done.stdout

    def holder_pid(self) -> int:
        pids = user_env.holder_pids(self.user)
        assert len(pids) == 1, f"expected one rootless namespace holder of {self.user.name}, found {pids}"
        return pids[0]


def _require_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("the rootless tests create their users with useradd: run them as root in CI")
    pytest.skip("creating the test users needs root")


def _end_processes(user: user_env.User) -> None:
    """SIGKILL every process of the test user (all started by these tests), by pid."""
    for _ in range(50):
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if proc.stat().st_uid == user.uid:
                        pids.append(int(proc.name))
                except OSError:
                    continue
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _wipe(user: user_env.User) -> None:
    """Nothing of an earlier session stays: files it made may belong to another id range."""
    _end_processes(user)
    for directory in (user.home, user.runtime_dir):
        for path in directory.iterdir():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    temp = user.home / "tmp"
    temp.mkdir(mode=0o700)
    os.chown(temp, user.uid, user.gid)


@pytest.fixture(scope="session")
def rootless_install() -> Iterator[Path]:
    """This checkout installed where any user can run it (user_env.install)."""
    _require_root()
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run commands as the test user")
    destination = user_env.CACHE / f"session-{os.getpid()}"
    shutil.rmtree(destination, ignore_errors=True)
    bin_dir = user_env.install(destination)
    yield bin_dir
    shutil.rmtree(destination, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_archive(rootless_install: Path) -> Iterator[Path]:
    """The busybox image built by root (apt downloads need root) as an OCI archive the users can read."""
    work = user_env.CACHE / f"image-{os.getpid()}"
    work.mkdir(mode=0o755, parents=True, exist_ok=True)
    env = {**os.environ, "HOSTRT_ROOT": str(work / "root"), "HOSTRT_SERVER": "0"}
    for args in (["image", "build", str(user_env.REPO / "images" / "busybox")],
                 ["save", "busybox", "-o", str(work / "busybox.tar")]):
        done = subprocess.run([sys.executable, "-m", "hostrt", *args], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"hostrt {' '.join(args)}: {done.stderr}"
    (work / "busybox.tar").chmod(0o644)
    yield work / "busybox.tar"
    shutil.rmtree(work, ignore_errors=True)


def _session_user(name: str, subids: int | None, bin_dir: Path, archive: Path) -> Iterator[AsUser]:
    user = user_env.make_user(name, subids)
    _wipe(user)
    as_user = AsUser(user, bin_dir)
    as_user.ok("load", "-i", str(archive))
    yield as_user
    _wipe(user)


@pytest.fixture(scope="session")
def rootless(rootless_install: Path, busybox_archive: Path) -> Iterator[AsUser]:
    """A user with a subordinate id range, the busybox image in its own store."""
    yield from _session_user(USER, SUBIDS, rootless_install, busybox_archive)


@pytest.fixture(scope="session")
def rootless_single(rootless_install: Path, busybox_archive: Path) -> Iterator[AsUser]:
    """A user without subordinate ids (the single-id map 0 -> user)."""
    yield from _session_user(SINGLE_USER, None, rootless_install, busybox_archive)
