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
