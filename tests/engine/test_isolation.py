"""A container's working directory never leaves its root, whatever descriptor the engine,
its server's worker or the runtime holds while the process starts (runc's CVE-2024-21626):
`run -w` and `exec -w` on /proc/self/fd/N are refused with a one-line error."""

from __future__ import annotations

import pytest

from tests.engine.conftest import Hostrt

pytestmark = pytest.mark.root

ESCAPE = "cd ../../../../../../../../..; cat etc/hostname; ls -d vm* usr 2>/dev/null; echo end"
FD_CWDS = [f"/proc/self/fd/{n}" for n in range(3, 16)]


def _host_hostname() -> str:
    with open("/etc/hostname") as f:
        return f.read().strip()


@pytest.mark.parametrize("cwd", FD_CWDS)
def test_run_workdir_on_a_descriptor_is_refused(hostrt: Hostrt, cwd: str) -> None:
    done = hostrt("run", "--rm", "-w", cwd, "busybox", "sh", "-c", ESCAPE)
    assert done.returncode in (125, 127), f"-w {cwd} ran: {done.stdout}"  # 127: no such descriptor
    assert "end" not in done.stdout and _host_hostname() not in done.stdout
    assert done.stderr.count("\n") == 1 and cwd in done.stderr


def test_exec_workdir_on_a_descriptor_is_refused(hostrt: Hostrt) -> None:
    cid = hostrt.ok("run", "-d", "busybox", "sleep", "60").strip()
    try:
        for cwd in FD_CWDS:
            done = hostrt("exec", "-w", cwd, cid, "sh", "-c", ESCAPE)
            assert done.returncode != 0 and "end" not in done.stdout, f"exec -w {cwd} ran: {done.stdout}"
            assert cwd in done.stderr
        assert hostrt.ok("exec", "-w", "/tmp", cid, "pwd") == "/tmp\n"
    finally:
        hostrt("rm", "-f", cid)


@pytest.mark.parametrize("server", ["1", "0"])
def test_proc_self_exe_entrypoint_runs_the_sealed_copy(hostrt: Hostrt, tmp_path, server: str) -> None:
    """A `#!/proc/self/exe` entrypoint runs whatever the init was at its execve: a fork of the
    engine server's worker, or hostrt-runtime exec'd by a plain command line. It must be the
    sealed copy, never the host's interpreter file (CVE-2019-5736)."""
    import os
    import sys

    from tests.native.test_escape import interpreter_mounts

    hostrt.env["HOSTRT_SERVER"] = server
    entry = tmp_path / "entry"
    entry.write_text("#!/proc/self/exe -S\nimport posix\nprint('exe=' + posix.readlink('/proc/self/exe'))\n")
    entry.chmod(0o755)
    volumes = [f"-v{m['source']}:{m['destination']}:ro" for m in interpreter_mounts(os.path.realpath(sys.executable))]
    done = hostrt("run", "--rm", *volumes, "-v", f"{tmp_path}:/x:ro", "busybox", "/x/entry")
    assert "exe=" in done.stdout, f"the entrypoint did not run: {done.stdout} {done.stderr}"
    assert done.stdout.split("exe=", 1)[1].startswith("/memfd:hostrt-sealed-exe"), done.stdout
