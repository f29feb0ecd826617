"""`hostrt cp` against a hostile container: links to "/" (and to host paths) at the name it
writes, inside trees it merges into, and swapped in while the copy runs (CVE-2018-15664).
Nothing outside the container's root may be read or written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt


def _rootfs(hostrt: Hostrt, name: str) -> Path:
    return hostrt.root / "containers" / json.loads(hostrt.ok("inspect", name))[0]["id"] / "rootfs"


def test_cp_in_replaces_links_instead_of_writing_through_them(hostrt: Hostrt, tmp_path: Path) -> None:
    host = tmp_path / "host"  # where the container's links point, seen from the host
    host.mkdir()
    box = f"cplinks-{uuid.uuid4().hex[:6]}"
    hostrt.ok("run", "--name", box, "busybox", "sh", "-c",
              f"ln -s {host}/file.txt /tmp/file.txt; mkdir -p /merge/tree; ln -s {host} /merge/tree/sub; "
              f"ln -s / /merge/tree/root")
    try:
        (tmp_path / "file.txt").write_text("from host\n")
        (tmp_path / "tree" / "sub").mkdir(parents=True)
        (tmp_path / "tree" / "sub" / "planted").write_text("x\n")
        (tmp_path / "tree" / "root").mkdir()
        (tmp_path / "tree" / "root" / "planted").write_text("x\n")
        hostrt.ok("cp", str(tmp_path / "file.txt"), f"{box}:/tmp/")
        hostrt.ok("cp", str(tmp_path / "tree"), f"{box}:/merge")
        assert os.listdir(host) == [], "cp wrote through a container symlink"
        assert not Path("/planted").exists()
        rootfs = _rootfs(hostrt, box)
        assert (rootfs / "tmp" / "file.txt").read_text() == "from host\n"
        assert not (rootfs / "tmp" / "file.txt").is_symlink()
        assert (rootfs / "merge" / "tree" / "sub" / "planted").is_file()
        assert (rootfs / "merge" / "tree" / "root" / "planted").is_file()
    finally:
        Path("/planted").unlink(missing_ok=True)
        hostrt.ok("rm", "-f", box)


def test_cp_through_links_to_slash_stays_in_root(hostrt: Hostrt, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("HOST SECRET\n")
    box = f"cproot-{uuid.uuid4().hex[:6]}"
    name = f"hostrt-escape-{uuid.uuid4().hex[:10]}"
    hostrt.ok("run", "--name", box, "busybox", "sh", "-c",
              f"ln -s / /escape; mkdir -p /dir; ln -s / /dir/up; ln -s {secret} /dir/abs")
    try:
        missing = hostrt("cp", f"{box}:/escape{secret}", str(tmp_path / "out1"))
        assert missing.returncode == 125 and not (tmp_path / "out1").exists()
        hostrt.ok("cp", f"{box}:/escape/dir", str(tmp_path / "out2"))  # links come out as links
        assert os.readlink(tmp_path / "out2" / "up") == "/" and os.readlink(tmp_path / "out2" / "abs") == str(secret)
        (tmp_path / name).write_text("in\n")
        hostrt.ok("cp", str(tmp_path / name), f"{box}:/escape/dir/up/escape/{name}")
        assert (_rootfs(hostrt, box) / name).read_text() == "in\n" and not Path("/" + name).exists()
        refused = hostrt("cp", f"{box}:/dir/abs", str(tmp_path / "out3"))  # /dir/abs is dangling inside
        assert refused.returncode == 125 and not (tmp_path / "out3").exists()
    finally:
        Path("/" + name).unlink(missing_ok=True)
        hostrt.ok("rm", "-f", box)


# The container swaps /d/sub and /d/link (a link to a host directory) with
# renameat2(RENAME_EXCHANGE) in a loop: /d/sub is always one or the other, flipping every
# few microseconds; the host copies out of and into /d/sub again and again meanwhile.
_SWAPPER = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    if (syscall(SYS_renameat2, AT_FDCWD, "/d/sub", AT_FDCWD, "/d/link", 2 /* RENAME_EXCHANGE */) != 0) {
        perror("renameat2");
        return 1;
    }
    close(creat("/ready", 0644));
    for (;;)
        syscall(SYS_renameat2, AT_FDCWD, "/d/sub", AT_FDCWD, "/d/link", 2);
}
"""


def _swapper(tmp_path: Path) -> Path:
    source = tmp_path / "swap.c"
    source.write_text(_SWAPPER)
    tool = tmp_path / "tool"
    tool.mkdir()
    try:
        subprocess.run(["cc", "-static", "-O2", "-o", str(tool / "swap"), str(source)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"needs a C compiler with a static libc for the swapping program: {err}")
    return tool


def test_cp_holds_while_the_container_swaps_a_directory_for_a_link(hostrt: Hostrt, tmp_path: Path) -> None:
    tool = _swapper(tmp_path)
    secret = tmp_path / "secret"  # a host directory the container's link names
    secret.mkdir()
    (secret / "f").write_text("HOST SECRET\n")
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "planted").write_text("from cp\n")
    box = f"cprace-{uuid.uuid4().hex[:6]}"
    hostrt.ok("run", "-d", "--name", box, "-v", f"{tool}:/tool", "busybox", "sh", "-c",
              f"mkdir -p /d/sub && echo container > /d/sub/f && ln -s {secret} /d/link && exec /tool/swap")
    try:
        rootfs = _rootfs(hostrt, box)
        deadline = time.monotonic() + 30
        while not (rootfs / "ready").exists():
            assert time.monotonic() < deadline, "the swapping program did not start: " + hostrt("logs", box).stderr
            time.sleep(0.05)
        rounds = int(os.environ.get("HOSTRT_TEST_CP_RACE_ROUNDS", "25"))
        copied = 0
        for i in range(rounds):
            out = tmp_path / f"out{i}"
            procs = [
                subprocess.Popen([sys.executable, "-m", "hostrt", "cp", f"{box}:/d/sub", str(out)], env=hostrt.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                subprocess.Popen([sys.executable, "-m", "hostrt", "cp", str(payload), f"{box}:/d/sub/"], env=hostrt.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            ]
            for proc in procs:
                proc.wait(timeout=120)
            assert sorted(os.listdir(secret)) == ["f"], f"round {i}: cp wrote into the host directory"
            for f in out.rglob("f") if out.is_dir() else ([out] if out.exists() else []):
                assert f.read_text() != "HOST SECRET\n", f"round {i}: cp read the host file {secret / 'f'}"
                copied += 1
        assert copied, "no copy ever succeeded: the test proves nothing"
    finally:
        hostrt("rm", "-f", box)
