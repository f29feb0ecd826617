"""Container files are out of other users' reach (Docker's CVE-2021-41091): a setuid-root
binary a container makes in its upper directory cannot be run, nor even seen, by an
unprivileged host user through the host path — on a new install and on one an older hostrt
left open. Non-root installs are their user's alone."""

from __future__ import annotations

import os
import shutil
import platform
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt, _runtime

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")]

NOBODY = 65534
# The container makes setuid-root copies of busybox and of a probe in its upper directory, then waits.
SUID_SCRIPT = ("mkdir /suid && cp /bin/busybox /probe/euid /suid/ && chmod 4755 /suid/busybox /suid/euid "
               "&& touch /made && exec sleep 300")


def euid_probe() -> bytes:
    """A static x86-64 program that exits with its effective uid (0 when a setuid-root copy runs
    as root; busybox itself drops the privilege for most applets, any other binary need not)."""
    code = bytes.fromhex("b86b0000000f05" "89c7" "b83c0000000f05")  # geteuid(); exit(it)
    base, headers = 0x400000, 64 + 56
    elf = struct.pack("<4s5B7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 62, 1, base + headers, 64, 0, 0,
                      64, 56, 1, 0, 0, 0)
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, headers + len(code), headers + len(code), 0x1000)
    return elf + segment + code


def as_nobody(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`command` run by an unprivileged user; the program is found with root's capabilities
    still (setpriv keeps them up to its execve), it runs without them."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command],
                          capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)


def exec_as_nobody(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`path` executed by an unprivileged user: by a shell that is capless by then."""
    return as_nobody("/bin/sh", "-c", 'exec "$0" "$@"', str(path), *args)


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A directory every user may traverse, so that only hostrt's own modes stand in the way
    (pytest's temporary directories are under a 0700 one)."""
    parent = Path(tempfile.mkdtemp(prefix="hostrt-private-", dir="/tmp"))
    parent.chmod(0o755)
    yield parent
    subprocess.run(["pkill", "-f", "--", f"--socket {parent}"], capture_output=True)
    shutil.rmtree(parent, ignore_errors=True)


def with_busybox(hostrt: Hostrt, engine_root: Path) -> None:
    """The session's busybox image, copied in (a build per root would cost seconds)."""
    hostrt.root.mkdir(exist_ok=True)
    subprocess.run(["cp", "-a", str(engine_root / "store"), str(hostrt.root / "store")], check=True)


def start_suid_container(hostrt: Hostrt, probe_dir: Path) -> Path:
    """The container's upper directory, once the setuid copies are in it."""
    (probe_dir / "euid").write_bytes(euid_probe())
    cid = hostrt.ok("run", "-d", "--network", "none", "-v", f"{probe_dir}:/probe:ro", "busybox", "sh", "-c",
                    SUID_SCRIPT).strip()
    upper = hostrt.root / "containers" / cid / "upper"
    deadline = time.monotonic() + 30
    while not (upper / "made").exists():
        assert time.monotonic() < deadline, "the container did not make its setuid copies"
        time.sleep(0.05)
    for name in ("busybox", "euid"):
        made = os.stat(upper / "suid" / name)
        assert made.st_uid == 0 and made.st_mode & stat.S_ISUID, "a setuid-root binary now sits in the upper dir"
    return upper


def reachable_by_nobody(hostrt: Hostrt, upper: Path) -> list[str]:
    """Every way into the container's files that an unprivileged user found open."""
    container_dir = upper.parent
    layer = next(p for p in (hostrt.root / "layers").iterdir() if (p / "bin" / "busybox").exists())
    found = []
    for path in (upper / "suid" / "busybox", container_dir / "rootfs" / "suid" / "busybox",
                 container_dir / "config.json", layer / "bin" / "busybox", hostrt.root / "store" / "index.json"):
        if as_nobody("stat", str(path)).returncode == 0:
            found.append(f"stat {path}")
    if exec_as_nobody(upper / "suid" / "busybox", "true").returncode != 126:  # the shell's "cannot execute"
        found.append("ran the setuid copy of busybox")
    if platform.machine() == "x86_64":
        probe = exec_as_nobody(upper / "suid" / "euid")
        if probe.returncode != 126:
            found.append(f"ran the setuid probe: euid {probe.returncode}")
    return found


def test_a_setuid_binary_made_in_a_container_is_out_of_other_users_reach(
        open_parent: Path, engine_root: Path) -> None:
    hostrt = Hostrt(open_parent / "root", _runtime())
    hostrt.ok("ps")  # a new install: hostrt makes its roots
    with_busybox(hostrt, engine_root)
    upper = start_suid_container(hostrt, open_parent)
    try:
        assert reachable_by_nobody(hostrt, upper) == []
        for directory in (hostrt.root, hostrt.root / "run"):
            assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
        for name in ("containers", "layers"):
            assert os.stat(hostrt.root / name).st_mode & 0o077 == 0, f"{name} is closed too"
        assert os.stat(hostrt.root / "run" / "runtime").st_mode & 0o077 == 0, "the runtime's --root is closed"
        assert os.stat(upper.parent).st_mode & 0o077 == 0, "each container's directory is closed"
    finally:
        hostrt("rm", "-f", upper.parent.name)


def test_an_install_an_older_hostrt_left_open_is_closed_on_first_use(open_parent: Path, engine_root: Path) -> None:
    hostrt = Hostrt(open_parent / "root", _runtime())
    hostrt.ok("ps")
    with_busybox(hostrt, engine_root)
    upper = start_suid_container(hostrt, open_parent)
    try:
        # As an older hostrt made them: every directory open to all.
        old_modes = {hostrt.root: 0o755, hostrt.root / "containers": 0o755, hostrt.root / "layers": 0o755,
                     hostrt.root / "store": 0o755, hostrt.root / "run": 0o755, hostrt.root / "run" / "runtime": 0o711,
                     upper.parent: 0o755}
        for path, mode in old_modes.items():
            path.chmod(mode)
        assert f"stat {upper / 'suid' / 'busybox'}" in reachable_by_nobody(hostrt, upper), "the old install is open"
        hostrt.ok("ps")  # any command of the new hostrt
        assert reachable_by_nobody(hostrt, upper) == []
        for path in list(old_modes)[:-1]:
            assert os.stat(path).st_mode & 0o077 == 0, f"{path} was closed"
    finally:
        hostrt("rm", "-f", upper.parent.name)


def _user_env(home: Path, runtime_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTRT_", "XDG_"))}
    return {**env, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime_dir), "HOSTRT_SERVER": "0",
            "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture
def hostrt_for_nobody() -> None:
    """The tests that run hostrt as another user need it importable by that user: a checkout and
    venv under a directory only root may enter (a clone in /root) is not."""
    done = as_nobody(sys.executable, "-c", "import hostrt.__main__, typer, pydantic")
    if done.returncode != 0:
        pytest.skip(f"this checkout or its venv cannot be read by uid {NOBODY} ({(done.stderr.strip().splitlines() or ['exit ' + str(done.returncode)])[-1]}): "
                    "clone under a directory other users may traverse to run it")


@pytest.mark.parametrize("install", ["new", "old"])
def test_a_users_install_is_their_own(open_parent: Path, install: str, hostrt_for_nobody: None) -> None:
    home, runtime_dir = open_parent / "home", open_parent / "xdg-run"
    roots = (home / ".local" / "share" / "hostrt", runtime_dir / "hostrt")
    for directory in (home, runtime_dir, *(roots if install == "old" else ())):
        directory.mkdir(mode=0o755, parents=True)  # an older hostrt left its roots open
        os.chown(directory, NOBODY, NOBODY)
    done = as_nobody(sys.executable, "-m", "hostrt", "ps", env=_user_env(home, runtime_dir))
    assert done.returncode == 0, done.stderr
    for directory in roots:
        st = os.stat(directory)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o700), directory


def test_a_user_never_keeps_containers_in_someone_elses_directory(open_parent: Path, hostrt_for_nobody: None) -> None:
    home, runtime_dir = open_parent / "home", open_parent / "xdg-run"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    runtime_dir.mkdir()
    runtime_dir.chmod(0o1777)  # shared, as /tmp is
    (runtime_dir / "hostrt").mkdir()  # made by another user (root here) before this one came
    (runtime_dir / "hostrt").chmod(0o777)
    done = as_nobody(sys.executable, "-m", "hostrt", "ps", env=_user_env(home, runtime_dir))
    assert done.returncode == 125
    assert done.stderr.strip().splitlines() == [
        f"hostrt: error: {runtime_dir / 'hostrt'} belongs to another user (uid 0): hostrt will not keep "
        "containers where someone else can reach them"]
