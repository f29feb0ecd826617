"""The in-root path resolver (backends/linux_native/inroot.py), through openat2 and through
its checked walk: symlinks and ".." stay inside the root, /proc magic links are refused,
missing directories are made under the root only."""

from __future__ import annotations

import errno
import os

import pytest

from backends.linux_native import inroot


@pytest.fixture(params=["openat2", "walk"])
def mode(request, monkeypatch):
    monkeypatch.setattr(inroot, "USE_OPENAT2", request.param == "openat2")
    return request.param


@pytest.fixture
def root(tmp_path):
    """A root with hostile links: absolute and relative ones pointing at "/" and above."""
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("inside\n")
    os.symlink("/", r / "mnt")
    os.symlink("/etc", r / "abs")
    os.symlink("../../../../..", r / "etc" / "up")
    os.symlink("/etc/passwd", r / "pw")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    (tmp_path / "outside").write_text("outside\n")
    return r


def _where(fd: int) -> str:
    try:
        return inroot.real_path(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("path, expected", [
    ("/abs/passwd", "etc/passwd"),
    ("/etc/up/etc/passwd", "etc/passwd"),
    ("/../../../etc", "etc"),
    ("mnt/mnt/etc/../etc/up/abs", "etc"),
    ("/pw", "etc/passwd"),
    ("/", ""),
    ("", ""),
    ("/etc/..", ""),
])
def test_links_and_dotdot_stay_inside(root, mode, path, expected):
    assert _where(inroot.open_in_root(str(root), path)) == str(root / expected).rstrip("/")


def test_root_as_fd_and_real_open(root, mode):
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = inroot.open_in_root(rootfd, "/mnt/abs/up/../etc/up/etc/../etc/passwd", os.O_RDONLY)
        with os.fdopen(fd) as f:
            assert f.read() == "inside\n"
        os.fstat(rootfd)  # still open: a root given as an fd is the caller's
    finally:
        os.close(rootfd)


def test_missing_and_loops(root, mode):
    with pytest.raises(FileNotFoundError):
        inroot.open_in_root(str(root), "/mnt/outside")
    with pytest.raises(OSError) as exc:
        inroot.open_in_root(str(root), "/loop1/x")
    assert exc.value.errno == errno.ELOOP
    with pytest.raises(NotADirectoryError):
        inroot.open_in_root(str(root), "/etc/passwd/x")


def test_last_link_not_followed(root, mode):
    fd = inroot.open_in_root(str(root), "/mnt", follow_last=False)
    try:
        assert os.readlink("", dir_fd=fd) == "/"
    finally:
        os.close(fd)
    fd = inroot.open_in_root(str(root), "/mnt", os.O_PATH | os.O_NOFOLLOW)  # the flag says the same
    try:
        assert os.readlink("", dir_fd=fd) == "/"
    finally:
        os.close(fd)
    with pytest.raises(OSError) as exc:
        inroot.open_in_root(str(root), "/pw", os.O_RDONLY, follow_last=False)
    assert exc.value.errno == errno.ELOOP


def test_create_through_a_link_lands_inside(root, mode, tmp_path):
    fd = inroot.open_in_root(str(root), "/mnt/created", os.O_WRONLY | os.O_CREAT, file_mode=0o600)
    os.close(fd)
    assert (root / "created").is_file() and not (tmp_path.parent / "created").exists()
    assert not os.path.exists("/created")


def test_mkdirs_under_links_stays_inside(root, mode, tmp_path):
    fd = inroot.mkdirs_in_root(str(root), "/mnt/new/../abs/up/a/b")
    assert _where(fd) == str(root / "a" / "b")
    assert not os.path.exists("/a/b") and not (tmp_path / "a").exists()
    # a dangling link is followed, and what it names made inside
    os.symlink("/made/here", root / "dangling")
    assert _where(inroot.mkdirs_in_root(str(root), "/dangling/x")) == str(root / "made/here/x")


@pytest.mark.parametrize("path", ["/proc/self/fd/0", "/proc/self/cwd", "/proc/self/root/etc", "/proc/thread-self/root",
                                  "/proc/self/exe", "/proc/self/ns/net", "/proc/thread-self/cwd"])
def test_proc_magic_links_refused(mode, path):
    with pytest.raises(OSError) as exc:
        os.close(inroot.open_in_root("/", path))
    assert exc.value.errno == errno.ELOOP


def test_proc_ordinary_links_allowed(mode):
    fd = inroot.open_in_root("/", "/proc/self/mounts", os.O_RDONLY)
    with os.fdopen(fd) as f:
        assert " / " in f.read()
    assert _where(inroot.open_in_root("/", "/proc/self")) == f"/proc/{os.getpid()}"


def test_fd_path_names_the_held_inode(root, mode):
    fd = inroot.open_in_root(str(root), "/etc", os.O_PATH | os.O_DIRECTORY)
    try:
        assert os.path.samefile(inroot.fd_path(fd) + "/passwd", root / "etc" / "passwd")
    finally:
        os.close(fd)
