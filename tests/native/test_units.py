"""Pure parts of the runtime that need no root: the command line, JSON, signal and size
parsing and mount options (the in-root resolver has its own tests: test_inroot.py)."""

from __future__ import annotations

import os

import pytest

from backends.linux_native import cli, jsonio
from backends.linux_native.errors import UsageError
from backends.linux_native.ops.kill import parse_signal
from backends.linux_native.ops.update import parse_bytes
from backends.linux_native.rootfs import parse_options
from backends.linux_native.tables import MOUNT_ATTR__ATIME, MOUNT_ATTR_NOATIME, MOUNT_ATTR_RDONLY, MS_BIND, MS_NODEV, MS_RDONLY, MS_REC, MS_SLAVE


def test_cli_accepts_runc_spellings():
    glob, command, opts = cli.parse(["--root", "/r", "--log=/l", "--log-format", "json", "create", "-bundle", "/b", "--pid-file=/p", "id1"])
    assert (glob.root, glob.log, glob.log_format, command) == ("/r", "/l", "json", "create")
    assert (opts.bundle, opts.pid_file, opts.id) == ("/b", "/p", "id1")
    # flags after the id (runtime-tools and people do that)
    _, _, opts = cli.parse(["delete", "id2", "--force"])
    assert opts.id == "id2" and opts.force is True


def test_cli_exec_keeps_the_command_verbatim():
    _, _, opts = cli.parse(["exec", "-t", "--env", "A=1", "-e", "B=2", "c1", "ls", "-la", "--color"])
    assert opts.id == "c1" and opts.tty is True and opts.env == ["A=1", "B=2"]
    assert opts.args == ["ls", "-la", "--color"]


@pytest.mark.parametrize("argv", [[], ["create"], ["nope", "x"], ["state", "a", "b"], ["kill", "--bogus", "x"], ["create", "--bundle"]])
def test_cli_usage_errors(argv):
    with pytest.raises(UsageError):
        cli.parse(argv)


def test_signal_names():
    assert parse_signal(None) == 15
    assert parse_signal("KILL") == parse_signal("SIGKILL") == parse_signal("kill") == parse_signal("9") == 9
    with pytest.raises(UsageError):
        parse_signal("SIGNOPE")


def test_sizes():
    assert parse_bytes("64m") == 64 << 20
    assert parse_bytes("1G") == 1 << 30
    assert parse_bytes("4096") == 4096
    assert parse_bytes("-1") == -1


def test_jsonio_round_trip_and_errors():
    value = {"a": [1, 2.5, True, None, "é\n"], "b": {}}
    assert jsonio.loads(jsonio.dumps(value)) == value
    for bad in ("{", "[1,]", "{} {}", ""):
        with pytest.raises(ValueError):
            jsonio.loads(bad)


def test_mount_options():
    flags, clear, propagation, data, recursive = parse_options(["rbind", "ro", "nodev", "rslave", "mode=755", "size=1k"])
    assert flags == MS_BIND | MS_REC | MS_RDONLY | MS_NODEV
    assert propagation == [MS_SLAVE | MS_REC]
    assert data == "mode=755,size=1k" and recursive == (0, 0)
    flags, clear, _, _, _ = parse_options(["ro", "rw"])
    assert flags & MS_RDONLY == 0 and clear & MS_RDONLY
    *_, recursive = parse_options(["rbind", "rro", "rnoatime"])
    assert recursive == (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME)
    *_, recursive = parse_options(["rro", "rrw"])
    assert recursive == (0, MOUNT_ATTR_RDONLY)


def test_channel_keeps_answers_sent_back_to_back():
    """Two answers may arrive in one read; the child must see both, in order."""
    from backends.linux_native.channel import Channel

    chan = Channel()
    pid = os.fork()
    if pid == 0:
        chan.child_side()
        first, second = chan.wait(), chan.wait()
        chan.send("got", f"{first}|{second}")
        os._exit(0)
    chan.parent_side()
    chan.answer("go")
    chan.answer('{"id": "c1"}')
    os.close(chan.down_w)  # a lost line then ends the child's second wait (EOF), not hangs it
    assert chan.recv() == ("got", 'go|{"id": "c1"}')
    os.waitpid(pid, 0)
    chan.close()


def test_events_interval_takes_go_durations():
    from backends.linux_native.ops.events import parse_interval

    assert parse_interval(None) == 5.0
    assert parse_interval("250ms") == 0.25
    assert parse_interval("2s") == 2.0 and parse_interval("1.5s") == 1.5 and parse_interval("1m") == 60.0
    for bad in ("5", "s", "-1s", "5x"):
        with pytest.raises(UsageError):
            parse_interval(bad)


def test_launcher_finds_the_package_and_respects_pythonpath(tmp_path):
    """bin/hostrt-runtime runs with -S (no site): it must find the installed package, and
    a PYTHONPATH tree comes first, as it would for a plain import."""
    import subprocess
    import sys
    from pathlib import Path

    launcher = Path(sys.executable).with_name("hostrt-runtime")
    if not launcher.exists():
        pytest.skip("needs the installed hostrt-runtime script (pip install -e .)")
    out = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("hostrt-runtime version")
    fake = tmp_path / "backends" / "linux_native"
    fake.mkdir(parents=True)
    (tmp_path / "backends" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("def main():\n    print('fake tree')\n    return 0\n\n\ndef exit_now(code):\n    raise SystemExit(code)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, check=True, env=env).stdout
    assert out == "fake tree\n"


def test_wait_exit_blocks_until_the_process_is_gone():
    """pidfd wait: False while the process lives (the timeout ends it), True once it exited."""
    import signal

    from backends.linux_native.pidwait import wait_exit

    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    try:
        assert wait_exit(pid, 0.05) is False
        os.kill(pid, signal.SIGKILL)
        assert wait_exit(pid, 30) is True  # a zombie counts as gone
    finally:
        os.waitpid(pid, 0)
    assert wait_exit(pid, 0) is True  # reaped: no such process


def test_fastos_paths_agree_with_os_path(tmp_path):
    """fastos stands in for os on the short commands' path: same answers as os.path."""
    import posixpath

    from backends.linux_native import fastos

    paths = ["/a/b", "a/b/", "/", "//", "///a", "a/../b", "../a", "/../a", "a/./b/.", "/a//b", "a/b/../../..",
             "/sys/fs/cgroup/cpu//x/", "foo", "./x", "..", "/run/hostrt-runtime/c1/state.json"]
    for p in paths:
        for name in ("normpath", "dirname", "basename", "abspath"):
            assert getattr(fastos.path, name)(p) == getattr(posixpath, name)(p), (name, p)
    for p, start in [("/sys/fs/cgroup/a/b", "/sys/fs/cgroup"), ("/a", "/a"), ("/a/b", "/a/c/d"), ("x", "."), ("/", "/a")]:
        assert fastos.path.relpath(p, start) == posixpath.relpath(p, start), (p, start)
    (tmp_path / "link").symlink_to("missing")
    for p in [str(tmp_path / "link"), str(tmp_path), "relative", "/proc/self/exe"]:
        assert (fastos.path.lexists(p), fastos.path.islink(p), fastos.path.isabs(p)) == (
            os.path.lexists(p), os.path.islink(p), os.path.isabs(p)), p
    import subprocess
    import sys

    code = ("import os, sys; sys.path.insert(0, %r)\nfrom backends.linux_native import fastos\n"
            "print(fastos.environ == dict(os.environ), fastos.environ.get('LISTEN_FDS'))") % os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, LISTEN_FDS="2")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["True", "2"]
    for parts in [("/a", "b"), ("/a/", "b"), ("a", "/b"), ("", "b"), ("/a", "b", "c"), ("/a", "")]:
        assert fastos.path.join(*parts) == posixpath.join(*parts), parts
    (tmp_path / "f").write_text("")
    for p in [str(tmp_path), str(tmp_path / "f"), str(tmp_path / "missing"), "/proc/self/fd/0"]:
        assert (fastos.path.exists(p), fastos.path.isdir(p), fastos.path.isfile(p)) == (
            os.path.exists(p), os.path.isdir(p), os.path.isfile(p)), p
    fastos.makedirs(str(tmp_path / "x" / "y" / "z"), exist_ok=True)
    assert (tmp_path / "x" / "y" / "z").is_dir()
    fastos.makedirs(str(tmp_path / "x" / "y" / "z"), exist_ok=True)
    with pytest.raises(FileExistsError):
        fastos.makedirs(str(tmp_path / "x"))


def test_runtime_commands_do_not_import_os():
    """No command imports `os` (1.5-2 ms and ~200 KiB each call): fastos stands in; and
    start/state/kill/delete import nothing only create needs."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, %r)\n"
            "import backends.linux_native.__main__, backends.linux_native.ops.start, backends.linux_native.ops.delete\n"
            "import backends.linux_native.ops.state, backends.linux_native.ops.kill, backends.linux_native.cgroups.v1\n"
            "create_only = ('os', '_ctypes', 'backends.linux_native.spec', 'backends.linux_native.process',\n"
            "               'backends.linux_native.init', 'backends.linux_native.rootfs', 'backends.linux_native.syscalls')\n"
            "print(sorted(m for m in create_only if m in sys.modules))") % os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import backends.linux_native.__main__ as m\n"
            "for op in set(m.OPERATIONS.values()): __import__('backends.linux_native.ops.' + op)\n"
            "import backends.linux_native.init, backends.linux_native.cgroups.v2, backends.linux_native.cgroups.oom\n"
            "print('os' in sys.modules)") % os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_v2_block_io_weights_use_the_io_scale(tmp_path) -> None:
    """blockIO weights are v1's scale (10-1000): io.weight takes them converted to 1-10000,
    io.bfq.weight (present only where BFQ is the scheduler) unchanged, as runc and crun do.
    The cgroup is a plain directory here: what is under test is which file gets which value."""
    from backends.linux_native.cgroups.v2 import V2Manager

    blockio = {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 10}]}
    plain = V2Manager(str(tmp_path))
    assert plain._io_weights(blockio) == [("io.weight", "4950"), ("io.weight", "8:0 1")]
    (tmp_path / "io.bfq.weight").write_text("default 100\n")
    assert plain._io_weights(blockio) == [("io.bfq.weight", "500"), ("io.bfq.weight", "8:0 10")]
