"""`-v SRC:DST:ro` is read-only all the way down, like Docker's on kernels with
mount_setattr: a mount below SRC on the host is read-only in the container too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt


def test_ro_volume_is_read_only_below_its_top_mount(hostrt: Hostrt, tmp_path: Path) -> None:
    source = tmp_path / "vol"
    (source / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(source / "sub")], check=True)
    try:
        out = hostrt.ok("run", "--rm", "-v", f"{source}:/v:ro", "busybox", "sh", "-c",
                        "touch /v/top; echo top=$?; touch /v/sub/below; echo below=$?; grep -c ' /v/sub ' /proc/mounts")
        assert out.split() == ["top=1", "below=1", "1"], out
        assert not (source / "sub" / "below").exists()
        out = hostrt.ok("run", "--rm", "-v", f"{source}:/v", "busybox", "sh", "-c", "touch /v/sub/below; echo rw=$?")
        assert out.split() == ["rw=0"]
    finally:
        subprocess.run(["umount", "-l", str(source / "sub")], check=False)


def test_volume_destination_through_a_proc_magic_link_is_refused(hostrt: Hostrt, tmp_path: Path) -> None:
    if os.environ.get("HOSTRT_TEST_RUNTIME"):
        pytest.skip("the refusal is hostrt-runtime's (runc 1.1 resolves the link's text inside the root instead)")
    done = hostrt("run", "--rm", "-v", f"{tmp_path}:/proc/self/cwd/x", "busybox", "true")
    assert done.returncode != 0 and "/proc/self/cwd/x" in done.stderr, done.stderr
