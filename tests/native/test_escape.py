"""Hostile containers that try to reach their host through the runtime itself: a working
directory on a descriptor the runtime holds (runc's CVE-2024-21626), and the runtime's own
binary through /proc/self/exe (runc's CVE-2019-5736)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from tests.native.conftest import RUNTIME

# Every descriptor number a runtime is likely to hold while it sets up a process.
FD_CWDS = [f"/proc/self/fd/{n}" for n in range(3, 12)]
ESCAPE = "cd ../../../../../../../../..; ls /; cat {marker} 2>/dev/null; echo end"


@pytest.fixture
def host_marker(tmp_path: Path) -> Path:
    """A file only the host has: a container that prints it has left its root."""
    marker = Path("/tmp") / f"hostrt-escape-marker-{os.getpid()}"
    marker.write_text("host-secret\n")
    yield marker
    marker.unlink()


@pytest.mark.parametrize("cwd", FD_CWDS)
def test_cwd_on_runtime_descriptor_is_refused(rt, bundle, host_marker, cwd):
    b = bundle("sh", "-c", ESCAPE.format(marker=host_marker), edit=lambda c: c["process"].__setitem__("cwd", cwd))
    proc = rt("run", "-b", str(b), "c1", check=False)
    assert "host-secret" not in proc.stdout, f"cwd {cwd} reached the host: {proc.stdout}"
    assert proc.returncode != 0, f"cwd {cwd} was accepted: {proc.stdout}"
    assert cwd in proc.stderr or "cwd" in proc.stderr


@pytest.mark.parametrize("cwd", FD_CWDS)
def test_exec_cwd_on_runtime_descriptor_is_refused(rt, bundle, host_marker, tmp_path, cwd):
    b = bundle("sleep", "30")
    rt("run", "-d", "-b", str(b), "c1")
    try:
        pfile = tmp_path / "process.json"
        pfile.write_text(json.dumps({"args": ["sh", "-c", ESCAPE.format(marker=host_marker)], "cwd": cwd,
                                     "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin:/usr/bin"]}))
        proc = rt("exec", "--process", str(pfile), "c1", check=False)
        assert "host-secret" not in proc.stdout, f"exec cwd {cwd} reached the host: {proc.stdout}"
        assert proc.returncode != 0, f"exec cwd {cwd} was accepted: {proc.stdout}"
    finally:
        rt("kill", "c1", "KILL", check=False)
        rt("delete", "--force", "c1", check=False)


def test_cwd_is_created_inside_the_root(rt, bundle, tmp_path):
    """A missing cwd is created (as Docker does for WorkingDir), through the root's own symlinks
    only: a link to / in the image puts it at the container's /, never the host's."""
    link_name = f"hostrt-cwd-link-{os.getpid()}"
    host_side = Path("/") / "made-by-container"

    def edit(config):
        config["process"]["cwd"] = f"/{link_name}/made-by-container"

    b = bundle("pwd", readonly=False, edit=edit)
    (b / "rootfs" / link_name).symlink_to("/")
    proc = rt("run", "-b", str(b), "c1")
    assert proc.stdout.strip() == "/made-by-container"
    assert (b / "rootfs" / "made-by-container").is_dir()
    assert not host_side.exists()


def test_init_runs_from_a_sealed_copy_of_the_runtime(rt, bundle):
    """Until its execve the init is the runtime: what it exposes as /proc/PID/exe (and what a
    `#!/proc/self/exe` entrypoint would run) must be a copy nobody can write, not the host's
    interpreter."""
    b = bundle("/proc/self/exe")
    rt("create", "-b", str(b), "c1")
    pid = rt.state("c1")["pid"]
    held = -1
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        assert exe.startswith("/memfd:"), f"the init's exe is a host file: {exe}"
        held = os.open(f"/proc/{pid}/exe", os.O_PATH)  # kept, as an attacker would, past the process
    finally:
        rt("delete", "--force", "c1")
    try:
        fd = os.open(f"/proc/self/fd/{held}", os.O_WRONLY)
        try:
            with pytest.raises(OSError) as err:
                os.write(fd, b"overwritten")
            assert err.value.errno == errno.EPERM
        finally:
            os.close(fd)
    finally:
        os.close(held)


def interpreter_mounts(interpreter: str) -> list[dict]:
    """Read-only binds of what INTERPRETER needs to start (its loader, libraries, standard
    library), at their host paths, so that the container can run it if it reaches it."""
    import subprocess
    import sysconfig

    paths = {sysconfig.get_path("stdlib")}
    for line in subprocess.run(["ldd", interpreter], capture_output=True, text=True, check=True).stdout.splitlines():
        words = line.split()
        if "=>" in words and len(words) > 2 and words[2].startswith("/"):
            paths.add(words[2])
        elif words and words[0].startswith("/"):
            paths.add(words[0])  # the loader, named as the binary asks for it
    return [{"destination": p, "type": "bind", "source": os.path.realpath(p), "options": ["rbind", "ro"]}
            for p in sorted(paths)]


def test_proc_self_exe_shebang_runs_the_sealed_copy(rt, bundle):
    """A `#!/proc/self/exe` entrypoint is run by whatever the init's exe is at its execve:
    it must be the sealed copy, not the host's interpreter file (which the container could
    then hold and rewrite)."""
    interpreter = os.path.realpath(Path(RUNTIME[0]).with_name("python3")) if RUNTIME[0].endswith("hostrt-runtime") \
        else os.path.realpath(RUNTIME[0])
    b = bundle("/entry", readonly=False,
               edit=lambda c: c["mounts"].extend(interpreter_mounts(interpreter)))
    entry = b / "rootfs" / "entry"
    entry.write_text("#!/proc/self/exe -S\nimport posix\nprint('exe=' + posix.readlink('/proc/self/exe'))\n")
    entry.chmod(0o755)
    proc = rt("run", "-b", str(b), "c1", check=False)
    assert "exe=" in proc.stdout, f"the entrypoint did not run: {proc.stdout} {proc.stderr}"
    exe = proc.stdout.split("exe=", 1)[1].strip()
    assert exe.startswith("/memfd:"), f"a container ran the host's interpreter file {exe}"
