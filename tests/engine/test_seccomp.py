"""Docker's default seccomp profile in containers `hostrt run` makes: an allow list (a syscall
nobody allowed fails with EPERM), no new namespaces through clone(2) without CAP_SYS_ADMIN, and
clone3(2) answered ENOSYS so that C libraries fall back to clone. A static probe
(tests/probes/seccomp_probe.c) makes the syscalls busybox never makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt
from tests.probes import build_static

pytestmark = pytest.mark.root

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = "20000", "10000000", "40000000"
USER_AND_MOUNT = "10020000"
ADDR_NO_RANDOMIZE = "40000"
AF_UNIX, AF_INET, AF_VSOCK = "1", "2", "40"
EPERM, ENOSYS = "errno 1", "errno 38"


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("probe")
    directory.chmod(0o755)
    build_static("seccomp_probe", directory)
    return directory


def probe(hostrt: Hostrt, probe_dir: Path, *requests: str, options: tuple[str, ...] = ()) -> dict[str, str]:
    """{request: "ok" | "errno N"} for each request the probe made in a fresh container."""
    out = hostrt.ok("run", "--rm", "--network", "none", "-v", f"{probe_dir}:/probe:ro", *options,
                    "busybox", "/probe/seccomp_probe", *requests)
    return _answers(out)


def _answers(out: str) -> dict[str, str]:
    answers = {}
    for line in out.splitlines():
        if line.endswith(" ok"):
            answers[line[:-3]] = "ok"
        else:
            request, _, number = line.rpartition(" errno ")
            answers[request] = f"errno {number}"
    return answers


def test_default_container_cannot_clone_into_new_namespaces(hostrt: Hostrt, probe_dir: Path) -> None:
    """A user namespace needs no capability from the kernel, and gives all of them back inside:
    the profile, not the kernel, must refuse it (and every other namespace flag)."""
    got = probe(hostrt, probe_dir, "clone", CLONE_NEWUSER, "clone", USER_AND_MOUNT, "clone", CLONE_NEWNET,
                "clone3", "0", "clone3", CLONE_NEWUSER)
    assert got == {f"clone {CLONE_NEWUSER}": EPERM, f"clone {USER_AND_MOUNT}": EPERM, f"clone {CLONE_NEWNET}": EPERM,
                   "clone3 0": ENOSYS, f"clone3 {CLONE_NEWUSER}": ENOSYS}


def test_default_container_still_forks_and_runs_threads(hostrt: Hostrt, probe_dir: Path) -> None:
    out = hostrt.ok("run", "--rm", "--network", "none", "-v", f"{probe_dir}:/probe:ro", "busybox", "sh", "-c",
                    "/probe/seccomp_probe clone 0 thread; echo abc | cat | wc -c; (sleep 0; echo sub) &  wait")
    assert out.splitlines() == ["clone 0 ok", "thread ok", "4", "sub"]


def test_syscalls_outside_the_allow_list_fail_with_eperm(hostrt: Hostrt, probe_dir: Path) -> None:
    """pidfd_getfd (another process's fds: Docker's allow list has it only with CAP_SYS_PTRACE), a
    number no kernel has yet, personality flags and socket families beyond the allowed ones."""
    got = probe(hostrt, probe_dir, "getfd", "nr", "1000", "personality", ADDR_NO_RANDOMIZE, "personality", "0",
                "personality", "ffffffff", "socket", AF_VSOCK, "socket", AF_UNIX, "socket", AF_INET)
    assert got == {"getfd": EPERM, "nr 1000": EPERM, f"personality {ADDR_NO_RANDOMIZE}": EPERM, "personality 0": "ok",
                   "personality ffffffff": "ok", f"socket {AF_VSOCK}": EPERM, f"socket {AF_UNIX}": "ok",
                   f"socket {AF_INET}": "ok"}


def test_capabilities_bring_their_syscalls(hostrt: Hostrt, probe_dir: Path) -> None:
    got = probe(hostrt, probe_dir, "clone", USER_AND_MOUNT, "clone", CLONE_NEWNS, "clone3", "0", "getfd",
                options=("--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE"))
    assert got == {f"clone {USER_AND_MOUNT}": "ok", f"clone {CLONE_NEWNS}": "ok", "clone3 0": "ok", "getfd": "ok"}


def test_unconfined_has_no_filter(hostrt: Hostrt, probe_dir: Path) -> None:
    got = probe(hostrt, probe_dir, "clone", CLONE_NEWUSER, "clone3", "0", "nr", "1000",
                options=("--security-opt", "seccomp=unconfined"))
    assert got == {f"clone {CLONE_NEWUSER}": "ok", "clone3 0": "ok", "nr 1000": ENOSYS}


def test_exec_gets_the_containers_filter(hostrt: Hostrt, probe_dir: Path) -> None:
    cid = hostrt.ok("run", "-d", "--network", "none", "-v", f"{probe_dir}:/probe:ro", "busybox", "sleep", "60").strip()
    try:
        got = _answers(hostrt.ok("exec", cid, "/probe/seccomp_probe", "clone", CLONE_NEWUSER, "clone3", "0"))
        assert got == {f"clone {CLONE_NEWUSER}": EPERM, "clone3 0": ENOSYS}
    finally:
        hostrt("rm", "-f", cid)


def test_docker_format_profile_applies_rules_by_capability(hostrt: Hostrt, tmp_path: Path) -> None:
    """A profile written for Docker (includes/excludes, archMap) means what it means to Docker: a
    rule for CAP_SYS_ADMIN containers does not bind the others, and the reverse."""
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["symlink", "symlinkat"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        ]}))
    script = "mkdir /tmp/a 2>&1; echo mkdir=$?; ln -s a /tmp/l 2>&1; echo ln=$?"
    base = ("run", "--rm", "--network", "none", "--security-opt", f"seccomp={profile}")
    plain = hostrt.ok(*base, "busybox", "sh", "-c", script)
    assert "Permission denied" in plain and "mkdir=1" in plain and "ln=0" in plain, plain
    admin = hostrt.ok(*base, "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c", script)
    assert "mkdir=0" in admin and "ln=1" in admin, admin
