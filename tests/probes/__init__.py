"""Small static C programs the tests build with gcc at test time and bind-mount into busybox
containers, to make syscalls busybox never makes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def build_static(name: str, dest: Path) -> Path:
    """DEST/NAME built from NAME.c as a static binary (it runs in any root file system)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("needs gcc to build a test probe (apt-get install gcc libc6-dev)")
    binary = dest / name
    done = subprocess.run([gcc, "-static", "-O1", "-pthread", "-Wall", "-o", str(binary), str(HERE / f"{name}.c")],
                          capture_output=True, text=True)
    if done.returncode != 0 and "cannot find -lc" in done.stderr:
        pytest.skip("needs the static C library to build a test probe (apt-get install libc6-dev)")
    assert done.returncode == 0, done.stderr
    return binary
