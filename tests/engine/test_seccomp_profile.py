"""Docker's default seccomp profile and Docker-format profile files, as `hostrt.spec` resolves
them for a container's capabilities, architecture and kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostrt.engine.options import RunOptions
from hostrt.errors import UsageError
from hostrt.seccomp_default import NAMESPACE_FLAGS
from hostrt.spec import capabilities, seccomp_profile

pytestmark = pytest.mark.portable


def _profile(*, cap_add: tuple[str, ...] = (), arch: str = "amd64", kernel: tuple[int, int] | None = (6, 1),
             seccomp: str = "default") -> dict:
    options = RunOptions(cap_add=list(cap_add), seccomp=seccomp)
    profile = seccomp_profile(options, capabilities(options), arch, kernel)
    assert profile is not None
    return profile


def _plain(profile: dict, action: str = "SCMP_ACT_ALLOW") -> set[str]:
    """Names a rule without argument conditions gives ACTION."""
    return {name for rule in profile["syscalls"] if rule["action"] == action and not rule.get("args")
            for name in rule["names"]}


def _rules_for(profile: dict, name: str) -> list[dict]:
    return [rule for rule in profile["syscalls"] if name in rule["names"]]


def test_default_is_an_allow_list_refusing_with_eperm() -> None:
    profile = _profile()
    assert (profile["defaultAction"], profile["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 1)
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = _plain(profile)
    assert {"read", "write", "execve", "fork", "vfork", "wait4", "futex", "chown32", "arch_prctl"} <= allowed
    # what the old list of refusals let through: syscalls it forgot, and those added since
    assert not allowed & {"mount", "unshare", "setns", "reboot", "kexec_load", "pidfd_getfd", "process_madvise",
                          "fanotify_init", "vhangup", "sethostname", "clone", "clone3",
                          "lsm_list_modules", "open_by_handle_at", "personality", "socket"}
    assert "chroot" in allowed  # docker grants it with CAP_SYS_CHROOT, one of its defaults


def test_clone_without_namespaces_and_clone3_enosys_without_sys_admin() -> None:
    clone = _rules_for(_profile(), "clone")
    assert clone == [{"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]
    assert NAMESPACE_FLAGS == 0x7E020000  # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
    assert _rules_for(_profile(), "clone3") == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    # s390 passes the flags second
    assert _rules_for(_profile(arch="s390x"), "clone")[0]["args"][0]["index"] == 1

    admin = _profile(cap_add=("CAP_SYS_ADMIN",))
    assert {"clone", "clone3", "mount", "unshare", "setns", "sethostname"} <= _plain(admin)
    assert all(not rule.get("args") and rule["action"] == "SCMP_ACT_ALLOW" for rule in _rules_for(admin, "clone"))
    assert all(rule["action"] == "SCMP_ACT_ALLOW" for rule in _rules_for(admin, "clone3"))


def test_capabilities_architectures_and_kernel_add_their_syscalls() -> None:
    assert {"ptrace", "kcmp", "pidfd_getfd", "process_madvise"} <= _plain(_profile(cap_add=("CAP_SYS_PTRACE",)))
    assert "reboot" in _plain(_profile(cap_add=("CAP_SYS_BOOT",)))
    assert {"settimeofday", "clock_settime"} <= _plain(_profile(cap_add=("CAP_SYS_TIME",)))
    assert "reboot" not in _plain(_profile(cap_add=("CAP_SYS_ADMIN",)))

    arm = _profile(arch="arm64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert {"set_tls", "cacheflush", "arm_fadvise64_64"} <= _plain(arm) and "arch_prctl" not in _plain(arm)
    assert "architectures" not in _profile(arch="ppc64le")  # docker maps no sub-architectures there

    assert "ptrace" in _plain(_profile(kernel=(4, 8))) and "ptrace" in _plain(_profile(kernel=None))
    assert "ptrace" not in _plain(_profile(kernel=(4, 4)))


def test_socket_and_personality_are_allowed_by_argument() -> None:
    socket = _rules_for(_profile(), "socket")
    assert [(r["args"][0]["op"], r["args"][0]["value"]) for r in socket] == [
        ("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)]  # never AF_ALG (38) nor AF_VSOCK (40)
    personality = _rules_for(_profile(), "personality")
    assert sorted(r["args"][0]["value"] for r in personality) == [0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]


def test_unconfined_has_no_profile() -> None:
    assert seccomp_profile(RunOptions(seccomp="unconfined"), [], "amd64") is None


def _write(tmp_path: Path, data: object) -> str:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_docker_format_file_resolves_includes_excludes_and_arch_map(tmp_path: Path) -> None:
    data = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
            {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        ],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    }
    path = _write(tmp_path, data)
    plain = _profile(seccomp=path)
    assert plain["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert plain["flags"] == ["SECCOMP_FILTER_FLAG_LOG"]
    assert [rule["names"] for rule in plain["syscalls"]] == [["read", "write"], ["clone3"], ["arch_prctl"], ["ptrace"]]
    assert all(set(rule) <= {"names", "action", "errnoRet", "args"} for rule in plain["syscalls"])
    admin = _profile(seccomp=path, cap_add=("CAP_SYS_ADMIN",), arch="arm64", kernel=(4, 4))
    assert admin["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert [rule["names"] for rule in admin["syscalls"]] == [["read", "write"], ["mount"]]


def test_runtime_spec_format_file_passes_and_bad_files_are_refused(tmp_path: Path) -> None:
    oci = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                         "args": [{"index": 1, "value": 1, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]}]}
    assert _profile(seccomp=_write(tmp_path, oci)) == oci
    assert seccomp_profile(RunOptions(seccomp=_write(tmp_path, {})), [], "amd64") is None  # confines nothing
    for bad in ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [
                    {"architecture": "SCMP_ARCH_X86_64"}]},
                {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]},
                {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]},
                ["not", "an", "object"]):
        with pytest.raises(UsageError, match="invalid seccomp profile"):
            seccomp_profile(RunOptions(seccomp=_write(tmp_path, bad)), [], "amd64")
