"""The rootfs copy fallback (overlay mount failed): layers applied with overlayfs semantics
on held fds, so a lower layer's symlink never leads a later layer's files out of the root.

The overlay is made to fail for real: the container's upper directory is a tmpfs of its
own, and overlayfs refuses an upperdir and workdir on different mounts."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from hostrt.engine.snapshot import COPY_MARKER, mount_rootfs, unmount_rootfs


@pytest.fixture
def container_dir(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts, whiteout devices)")
    cdir = tmp_path / "container"
    (cdir / "upper").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(cdir / "upper")], check=True)
    yield cdir
    subprocess.run(["umount", "-l", str(cdir / "upper")], check=False)


def test_lower_layer_symlinks_are_not_followed_by_upper_layers(tmp_path: Path, container_dir: Path) -> None:
    name = f"hostrt-escape-{uuid.uuid4().hex[:10]}"
    lower, upper = tmp_path / "l1", tmp_path / "l2"
    lower.mkdir()
    os.symlink("/etc", lower / "x")
    os.symlink("../../../../../../../../tmp", lower / "y")
    (lower / "f").write_text("lower\n")
    for d in ("x", "y"):
        (upper / d).mkdir(parents=True)
        (upper / d / name).write_text("from the layer\n")
    outside = [Path("/etc") / name, Path("/tmp") / name]
    try:
        rootfs = mount_rootfs([lower, upper], container_dir)
        assert (container_dir / COPY_MARKER).exists(), "the overlay was expected to fail"
        assert not any(p.exists() for p in outside), "a layer wrote outside the root"
        for d in ("x", "y"):  # as overlayfs shows it: the upper directory replaces the lower link
            assert (rootfs / d).is_dir() and not (rootfs / d).is_symlink()
            assert (rootfs / d / name).read_text() == "from the layer\n"
        assert (rootfs / "f").read_text() == "lower\n"
    finally:
        for p in outside:
            p.unlink(missing_ok=True)
        unmount_rootfs(container_dir)


def test_copy_keeps_owners_modes_links_and_applies_whiteouts(tmp_path: Path, container_dir: Path) -> None:
    lower, upper = tmp_path / "l1", tmp_path / "l2"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "conf").write_text("c\n")
    (lower / "gone").write_text("g\n")
    (lower / "opaque").mkdir()
    (lower / "opaque" / "old").write_text("o\n")
    (lower / "tool").write_text("#!/bin/sh\n")
    os.chown(lower / "tool", 123, 456)
    os.chmod(lower / "tool", 0o4755)
    os.symlink("etc/conf", lower / "link")
    upper.mkdir()
    os.mknod(upper / "gone", 0o600 | 0o020000, os.makedev(0, 0))  # overlayfs whiteout
    (upper / "opaque").mkdir()
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    (upper / "opaque" / "new").write_text("n\n")
    (upper / ".wh.link").write_text("")  # an unprivileged unpack's whiteout marker
    try:
        rootfs = mount_rootfs([lower, upper], container_dir)
        assert (container_dir / COPY_MARKER).exists()
        assert (rootfs / "etc" / "conf").read_text() == "c\n"
        assert not (rootfs / "gone").exists() and not (rootfs / "link").is_symlink()
        assert os.listdir(rootfs / "opaque") == ["new"]
        st = os.stat(rootfs / "tool")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (123, 456, 0o4755)
    finally:
        unmount_rootfs(container_dir)
