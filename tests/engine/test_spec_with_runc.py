"""The generated config.json, run by a reference runtime (runc): docker's confinement shows inside.

runc is the judge here, not hostrt's own runtime, so these tests check `hostrt.spec` alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostrt.engine.options import RunOptions
from hostrt.spec import ContainerFiles, build_spec

BUSYBOX = Path("/bin/busybox")
RUNC = shutil.which("runc")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
    pytest.mark.skipif(RUNC is None, reason="runc is not installed (ci/setup installs it)"),
    pytest.mark.skipif(not BUSYBOX.exists(), reason="busybox-static is not installed (ci/setup installs it)"),
]

DOCKER_DEFAULT_CAPEFF = 0x00000000A80425FB  # the 14 default capabilities as a mask
HOST_ARCHITECTURE = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    # Outside pytest's 0700 temp tree: a non-root container user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="hostrt-spec-rootfs-"))
    root.chmod(0o755)
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp"):
        (root / sub).mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "cat", "id", "hostname", "unshare", "true", "grep", "ls"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\n")
    yield root
    shutil.rmtree(root)


def run_in_runc(rootfs: Path, tmp_path: Path, options: RunOptions) -> subprocess.CompletedProcess[str]:
    container_id = uuid.uuid4().hex + uuid.uuid4().hex
    files = ContainerFiles(tmp_path / "hostname", tmp_path / "hosts", tmp_path / "resolv.conf")
    files.hostname.write_text(container_id[:12] + "\n")
    files.hosts.write_text("127.0.0.1 localhost\n")
    files.resolv_conf.write_text("")
    bundle = Path(tempfile.mkdtemp(dir=tmp_path, prefix="bundle-"))
    spec = build_spec({"Cmd": ["sh"]}, options, rootfs, container_id, files, architecture=HOST_ARCHITECTURE)
    (bundle / "config.json").write_text(json.dumps(spec))
    state_root = tmp_path / "runc-state"
    try:
        return subprocess.run([RUNC, "--root", str(state_root), "run", "--bundle", str(bundle), container_id[:32]],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run([RUNC, "--root", str(state_root), "delete", "--force", container_id[:32]], capture_output=True)


def shell(script: str, **kwargs: object) -> RunOptions:
    return RunOptions(command=["sh", "-c", script], **kwargs)  # type: ignore[arg-type]


def test_default_capabilities_are_dockers(rootfs: Path, tmp_path: Path) -> None:
    done = run_in_runc(rootfs, tmp_path, shell("grep CapEff /proc/self/status"))
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[1], 16) == DOCKER_DEFAULT_CAPEFF


def test_exit_code_and_hostname(rootfs: Path, tmp_path: Path) -> None:
    done = run_in_runc(rootfs, tmp_path, shell("hostname; exit 7", hostname="web-1"))
    assert done.returncode == 7
    assert done.stdout.strip() == "web-1"


def test_masked_and_readonly_paths(rootfs: Path, tmp_path: Path) -> None:
    done = run_in_runc(rootfs, tmp_path, shell("cat /proc/kcore | wc -c; echo 1 > /proc/sys/kernel/domainname && echo wrote"))
    assert done.stdout.split()[0] == "0", "/proc/kcore is masked"
    assert "wrote" not in done.stdout and "Read-only file system" in done.stderr


def test_seccomp_blocks_unshare_unless_unconfined(rootfs: Path, tmp_path: Path) -> None:
    blocked = run_in_runc(rootfs, tmp_path, shell("unshare -u true; echo rc=$?"))
    assert "rc=0" not in blocked.stdout and "Operation not permitted" in blocked.stderr
    allowed = run_in_runc(rootfs, tmp_path, shell("unshare -u true; echo rc=$?", seccomp="unconfined",
                                                  cap_add=["CAP_SYS_ADMIN"]))
    assert "rc=0" in allowed.stdout, allowed.stderr


def test_default_seccomp_profile_under_runc(rootfs: Path, tmp_path: Path) -> None:
    """runc (libseccomp-golang) reads hostrt's default profile as hostrt's runtime does: no
    namespaces through clone, clone3 answered ENOSYS, fork and threads as usual."""
    from tests.probes import build_static

    shutil.copy2(build_static("seccomp_probe", tmp_path), rootfs / "bin" / "seccomp_probe")
    done = run_in_runc(rootfs, tmp_path, RunOptions(command=["seccomp_probe", "clone", "10000000", "clone3", "0",
                                                             "clone", "0", "thread"]))
    assert done.stdout.splitlines() == ["clone 10000000 errno 1", "clone3 0 errno 38", "clone 0 ok", "thread ok"], done


def test_user_from_image_passwd_and_no_caps(rootfs: Path, tmp_path: Path) -> None:
    done = run_in_runc(rootfs, tmp_path, shell("id -u; id -g; grep CapEff /proc/self/status", user="app"))
    assert done.returncode == 0, done.stderr
    uid, gid, capeff = done.stdout.split("\n")[:3]
    assert (uid, gid) == ("1000", "1000")
    assert int(capeff.split()[1], 16) == 0


def test_read_only_root_and_pids_limit(rootfs: Path, tmp_path: Path) -> None:
    done = run_in_runc(rootfs, tmp_path, shell("touch /x 2>&1; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
                                               read_only=True, pids_limit=17))
    assert "Read-only file system" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "17"
