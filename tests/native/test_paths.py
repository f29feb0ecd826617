"""Mount destinations and devices stay inside the container's root (hostile rootfs links,
/proc magic links), and recursive read-only binds hold below their top mount."""

from __future__ import annotations

import os
import subprocess
import traceback
import uuid
from pathlib import Path

import pytest

from backends.linux_native import rootfs, syscalls
from backends.linux_native.tables import MOUNT_ATTR_RDONLY, MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC


def _unique() -> str:
    return f"hostrt-escape-{uuid.uuid4().hex[:10]}"


def test_mount_destinations_through_a_link_to_slash_stay_inside(rt, bundle, tmp_path):
    """/mnt -> / in the image, and destinations that reach it after a missing directory
    and "..": the directory, the file made for a file bind and the device land in the root."""
    name = _unique()
    source = tmp_path / "source.txt"
    source.write_text("bound\n")

    def edit(config):
        config["mounts"] += [
            {"destination": f"/missing/../mnt/{name}", "type": "tmpfs", "source": "tmpfs", "options": []},
            {"destination": f"/gone/../mnt/mnt/{name}-file", "type": "bind", "source": str(source), "options": ["bind"]},
        ]
        config["linux"]["devices"] = [{"path": f"/nodir/../mnt/{name}-null", "type": "c", "major": 1, "minor": 3}]

    script = f"grep -c ' /{name} tmpfs' /proc/mounts; cat /{name}-file; ls /{name}-null"
    b = bundle("sh", "-c", script, edit=edit)
    os.symlink("/", b / "rootfs" / "mnt")
    host = [Path("/" + name), Path(f"/{name}-file"), Path(f"/{name}-null")]
    try:
        proc = rt("run", "-b", str(b), "c1", check=False)
        assert not any(p.exists() or p.is_symlink() for p in host), "a mount target was made on the host"
        assert proc.returncode == 0, proc.stderr + rt.log.read_text()
        assert proc.stdout.split() == ["1", "bound", f"/{name}-null"]
        assert (b / "rootfs" / name).is_dir() and (b / "rootfs" / f"{name}-file").is_file()
    finally:
        for p in host:
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            elif p.exists() or p.is_symlink():
                p.unlink()


@pytest.mark.parametrize("destination", ["/proc/self/cwd/x", "/proc/self/fd/0/x", "/proc/thread-self/root/tmp/x"])
def test_mount_destination_through_a_proc_magic_link_is_refused(rt, bundle, destination):
    """Once /proc is mounted in the root, /proc/self/* links name the runtime's own cwd,
    root and fds (host ones): a destination through them is an error, not a mount."""
    def edit(config):
        config["mounts"].append({"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": []})

    proc = rt("run", "-b", str(bundle("true", edit=edit)), "c1", check=False)
    assert proc.returncode != 0
    assert f"mount destination {destination}" in rt.log.read_text()


def _in_mount_namespace(body) -> None:
    """Run BODY in a forked child with its own (private) mount namespace; raise its failure."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 0
        try:
            syscalls.unshare(0x00020000)  # CLONE_NEWNS
            syscalls.mount(None, "/", None, MS_REC | MS_PRIVATE)
            body()
        except BaseException:
            os.write(write, traceback.format_exc().encode())
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        failure = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, failure


@pytest.mark.parametrize("mount_setattr", [True, False], ids=["mount_setattr", "remount-each"])
def test_recursive_readonly_bind_holds_below_its_top(tmp_path, mount_setattr):
    if os.geteuid() != 0:
        pytest.skip("needs root (mount namespaces)")
    root = tmp_path / "root"
    (root / "vol").mkdir(parents=True)
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)

    def body() -> None:
        syscalls.mount("tmpfs", str(source / "sub"), "tmpfs", 0, "size=1m")
        rootfs.USE_MOUNT_SETATTR = mount_setattr
        rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
        rootfs.bind(rootfd, str(source), "/vol", MS_BIND | MS_REC | MS_RDONLY, None, (MOUNT_ATTR_RDONLY, 0))
        for target in (root / "vol" / "top", root / "vol" / "sub" / "below"):
            try:
                target.write_text("x")
            except OSError as exc:
                assert exc.errno == 30, exc  # EROFS
            else:
                raise AssertionError(f"{target} is writable")
        (source / "sub" / "host-side").write_text("x")  # the source itself stays writable

    _in_mount_namespace(body)


def test_ro_option_alone_stays_top_only(tmp_path):
    """Plain "ro" keeps runc's meaning (the top mount only); "rro" is the recursive one."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mount namespaces)")
    root = tmp_path / "root"
    (root / "vol").mkdir(parents=True)
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)

    def body() -> None:
        syscalls.mount("tmpfs", str(source / "sub"), "tmpfs", 0, "size=1m")
        rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
        flags, _, prop, _, recursive = rootfs.parse_options(["rbind", "ro"])
        rootfs.bind(rootfd, str(source), "/vol", flags, prop, recursive)
        (root / "vol" / "sub" / "below").write_text("x")

    _in_mount_namespace(body)


def test_rro_volume_in_a_container(rt, bundle, tmp_path):
    """Through the runtime: a bind with "rro" whose source has a tmpfs mounted below it."""
    source = tmp_path / "vol"
    (source / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(source / "sub")], check=True)
    try:
        def edit(config):
            config["mounts"].append({"destination": "/vol", "type": "bind", "source": str(source),
                                     "options": ["rbind", "rprivate", "ro", "rro"]})

        script = "touch /vol/top; echo top=$?; touch /vol/sub/below; echo below=$?"
        proc = rt("run", "-b", str(bundle("sh", "-c", script, edit=edit)), "c1", check=False)
        assert proc.stdout.split() == ["top=1", "below=1"], proc.stdout + proc.stderr
        assert not (source / "sub" / "below").exists()
    finally:
        subprocess.run(["umount", "-l", str(source / "sub")], check=False)


def test_console_bind_stays_inside_the_root(tmp_path):
    """rootfs.bind_console (for init's /dev/console): made and bound in the root's /dev,
    even when /dev is a link to a host directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mount namespaces)")
    outside = tmp_path / "host-dev"
    outside.mkdir()
    linked, plain = tmp_path / "linked", tmp_path / "plain"
    linked.mkdir()
    os.symlink(str(outside), linked / "dev")
    (plain / "dev").mkdir(parents=True)
    os.symlink(str(outside / "console"), plain / "dev" / "console")

    def body() -> None:
        rootfs.bind_console(str(linked), "/dev/null")
        rootfs.bind_console(str(plain), "/dev/null")
        assert not (outside / "console").exists(), "the console was made outside the root"
        assert (plain / "dev" / "console").stat().st_rdev == os.stat("/dev/null").st_rdev

    _in_mount_namespace(body)
