"""What a container must not be able to do or see: dropped capabilities, masked and
read-only paths, a read-only root, no_new_privs, seccomp, leaked fds, the runtime's exe."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from backends.linux_native.tables import CAPABILITIES


def _status_field(output: str, field: str) -> str:
    return next(line.split()[1] for line in output.splitlines() if line.startswith(field + ":"))


def _caps(names: list[str]) -> dict:
    return {k: list(names) for k in ("bounding", "effective", "permitted", "ambient", "inheritable")}


def test_capability_drop_visible_in_proc_status(rt, bundle):
    keep = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"]
    b = bundle("cat", "/proc/self/status", edit=lambda c: c["process"].__setitem__("capabilities", _caps(keep)))
    out = rt("run", "-b", str(b), "c1").stdout
    mask = sum(1 << CAPABILITIES[name] for name in keep)
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(_status_field(out, field), 16) == mask, field
    assert int(_status_field(out, "CapEff"), 16) & (1 << CAPABILITIES["CAP_SYS_ADMIN"]) == 0
    assert _status_field(out, "NoNewPrivs") == "1"


def test_dropped_capability_is_enforced(rt, bundle):
    # chown needs CAP_CHOWN; without it root in the container gets EPERM.
    b = bundle("sh", "-c", "touch /tmp/f && chown 65534 /tmp/f", readonly=False,
               edit=lambda c: c["process"].__setitem__("capabilities", _caps(["CAP_KILL"])))
    proc = rt("run", "-b", str(b), "c1", check=False)
    assert proc.returncode != 0 and "Operation not permitted" in proc.stderr
    b2 = bundle("sh", "-c", "touch /tmp/f && chown 65534 /tmp/f", readonly=False,
                edit=lambda c: c["process"].__setitem__("capabilities", _caps(["CAP_CHOWN"])))
    assert rt("run", "-b", str(b2), "c2").returncode == 0


def test_no_new_privileges_off(rt, bundle):
    b = bundle("cat", "/proc/self/status", edit=lambda c: c["process"].__setitem__("noNewPrivileges", False))
    assert _status_field(rt("run", "-b", str(b), "c1").stdout, "NoNewPrivs") == "0"


def test_masked_paths_unreadable(rt, bundle):
    # /proc/timer_list (a file) and /sys/firmware (a directory) exist on every kernel we run on
    assert os.path.exists("/proc/timer_list") and os.listdir("/sys/firmware")
    script = "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo x > /proc/sys/kernel/hostname; echo rc=$?"

    def edit(config):
        config["linux"]["maskedPaths"] = ["/proc/timer_list", "/sys/firmware"]

    b = bundle("sh", "-c", script, edit=edit)
    proc = rt("run", "-b", str(b), "c1", check=False)
    lines = proc.stdout.split()
    assert lines[0] == "0"  # /proc/timer_list is /dev/null
    assert lines[1] == "0"  # /sys/firmware is an empty tmpfs
    assert lines[2] == "rc=1" and "Read-only file system" in proc.stderr  # /proc/sys is read-only
    b2 = bundle("sh", "-c", "wc -c < /proc/timer_list", edit=lambda c: c["linux"].__setitem__("maskedPaths", []))
    assert int(rt("run", "-b", str(b2), "c2").stdout) > 0


def test_readonly_root(rt, bundle):
    b = bundle("sh", "-c", "touch /newfile; echo rc=$?; touch /dev/shm/ok && echo shm-ok", readonly=True)
    proc = rt("run", "-b", str(b), "c1", check=False)
    assert "rc=1" in proc.stdout and "Read-only file system" in proc.stderr
    assert "shm-ok" in proc.stdout
    b2 = bundle("sh", "-c", "touch /newfile && echo rw-ok", readonly=False)
    assert "rw-ok" in rt("run", "-b", str(b2), "c2").stdout


def test_default_devices_and_mounts(rt, bundle):
    script = "ls -l /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; readlink /dev/ptmx; readlink /dev/fd; hostname; grep -c ' /proc ' /proc/mounts"
    out = rt("run", "-b", str(bundle("sh", "-c", script)), "c1").stdout
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        assert f"/dev/{name}" in out
    assert "pts/ptmx" in out and "/proc/self/fd" in out
    assert "hostrt-test" in out


def test_no_host_fds_leak_into_container(rt, bundle, tmp_path):
    b = bundle("ls", "/proc/self/fd")
    leak = os.open(tmp_path / "secret", os.O_CREAT | os.O_RDWR)
    try:
        os.set_inheritable(leak, True)
        proc = rt("run", "-b", str(b), "c1", pass_fds=(leak,))
        # ls itself opens one fd (3) for the directory
        assert sorted(proc.stdout.split()) == ["0", "1", "2", "3"]
        if leak == 3:
            b2 = bundle("ls", "/proc/self/fd")
            proc = rt("run", "--preserve-fds", "1", "-b", str(b2), "c2", pass_fds=(leak,))
            assert "4" in proc.stdout.split()
    finally:
        os.close(leak)


def test_runtime_is_not_dumpable(rt, bundle):
    """CVE-2019-5736 class: before start the init is the runtime's own process; root in
    the container without CAP_SYS_PTRACE must not reach its /proc/PID/exe."""
    b = bundle("sleep", "100")
    rt("create", "-b", str(b), "c1")
    caps = _caps(["CAP_KILL", "CAP_DAC_OVERRIDE"])
    proc_json = {"args": ["readlink", "/proc/1/exe"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                 "capabilities": caps, "env": ["PATH=/bin"]}
    pfile = b / "process.json"
    pfile.write_text(__import__("json").dumps(proc_json))
    proc = rt("exec", "--process", str(pfile), "c1", check=False)
    assert proc.returncode != 0, proc.stdout
    assert "python" not in proc.stdout
    rt("delete", "--force", "c1")


def test_seccomp_errno_rule(rt, bundle):
    def edit(config):
        config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
        }

    b = bundle("sh", "-c", "mkdir /tmp/x; echo rc=$?; touch /tmp/y && echo touch-ok", readonly=False, edit=edit)
    proc = rt("run", "-b", str(b), "c1", check=False)
    assert "rc=1" in proc.stdout and "Permission denied" in proc.stderr
    assert "touch-ok" in proc.stdout


def test_seccomp_argument_rule_kills(rt, bundle):
    def edit(config):
        # personality(0xffffffff) only queries; kill on the value 8 (PER_LINUX32 | ...).
        config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS",
                          "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]}],
        }

    b = bundle("sh", "-c", "kill -0 $$ && echo sig0-ok; kill -USR1 $$; echo not-reached", edit=edit)
    proc = rt("run", "-b", str(b), "c1", check=False)
    assert "sig0-ok" in proc.stdout and "not-reached" not in proc.stdout
    assert proc.returncode == 128 + 31  # SIGSYS


def test_seccomp_unknown_syscall_names_are_skipped(rt, bundle):
    """A name this libseccomp does not know (a newer kernel's, or none at all) is left to the
    default action, as runc does; the rest of the profile still applies."""
    def edit(config):
        config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["no_such_syscall_anywhere", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
        }

    b = bundle("sh", "-c", "mkdir /tmp/x; echo rc=$?", readonly=False, edit=edit)
    proc = rt("run", "-b", str(b), "c1", check=False)
    assert proc.returncode == 0 and "rc=1" in proc.stdout and "Operation not permitted" in proc.stderr, proc


@pytest.fixture(scope="module")
def seccomp_probe(tmp_path_factory) -> Path:
    from tests.probes import build_static

    return build_static("seccomp_probe", tmp_path_factory.mktemp("probe"))


def _probe_bundle(bundle, probe: Path, profile: dict, *requests: str) -> Path:
    b = bundle("seccomp_probe", *requests, edit=lambda c: c["linux"].__setitem__("seccomp", profile))
    shutil.copy2(probe, b / "rootfs" / "bin" / "seccomp_probe")
    return b


def test_seccomp_masked_eq_and_conditions_on_one_argument(rt, bundle, seccomp_probe):
    """MASKED_EQ compares only the masked bits; two conditions on one argument cannot be ANDed
    by libseccomp, so each is a rule of its own (runc's reading)."""
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 0, "value": 0x40000, "valueTwo": 0x40000, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 38, "op": "SCMP_CMP_EQ"}]},
        ],
    }
    b = _probe_bundle(bundle, seccomp_probe, profile, "personality", "40008", "personality", "8", "socket", "40",
                      "socket", "38", "socket", "1")
    out = rt("run", "-b", str(b), "c1").stdout.splitlines()
    assert out == ["personality 40008 errno 13", "personality 8 ok", "socket 40 errno 97", "socket 38 errno 97",
                   "socket 1 ok"]


def _docker_default(default_errno: int = 1) -> dict:
    from hostrt.seccomp_default import DEFAULT_PROFILE
    from hostrt.seccomp_profile import resolve

    machine = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    profile = resolve(DEFAULT_PROFILE, sorted(CAPABILITIES), machine, None)
    profile["defaultErrnoRet"] = default_errno
    return profile


def test_seccomp_default_errno_and_per_rule_errno(rt, bundle, seccomp_probe):
    b = _probe_bundle(bundle, seccomp_probe, _docker_default(default_errno=13), "nr", "1000", "clone3", "0",
                      "clone", "0")
    out = rt("run", "-b", str(b), "c1").stdout.splitlines()
    # with every capability in the bounding set clone3 is allowed; the default answers the rest
    assert out == ["nr 1000 errno 13", "clone3 0 ok", "clone 0 ok"]


def test_compiled_filters_are_kept_per_profile_and_a_bad_copy_is_not_loaded(rt, bundle, seccomp_probe):
    """The runtime keeps what libseccomp compiled under ROOT/@seccomp (0700), one program per
    profile; a kept file that is not a whole program is compiled again, not loaded."""
    strict = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO"}]}
    lenient = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]}
    for round_ in range(2):
        b = _probe_bundle(bundle, seccomp_probe, strict, "socket", "1")
        assert rt("run", "-b", str(b), f"s{round_}").stdout == "socket 1 errno 1\n"
    kept = rt.root / "@seccomp"
    assert kept.stat().st_mode & 0o777 == 0o700
    (program,) = kept.iterdir()
    assert program.stat().st_size % 8 == 0 and program.stat().st_mode & 0o777 == 0o600

    b = _probe_bundle(bundle, seccomp_probe, lenient, "socket", "1")
    assert rt("run", "-b", str(b), "l1").stdout == "socket 1 ok\n"
    assert len(list(kept.iterdir())) == 2

    program.write_bytes(b"\x06\x00\x00\x00\x00\x00")  # not whole 8-byte instructions
    b = _probe_bundle(bundle, seccomp_probe, strict, "socket", "1")
    assert rt("run", "-b", str(b), "s2").stdout == "socket 1 errno 1\n"
    assert program.stat().st_size % 8 == 0 and program.stat().st_size > 8


def test_user_namespace_mapping(rt, bundle, open_dir):
    def edit(config):
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]

    b = bundle("sh", "-c", "id -u; cat /proc/self/uid_map; sleep 100", copy=True, edit=edit, base=open_dir)
    subprocess.run(["chown", "-R", "-h", "100000:100000", str(b / "rootfs")], check=True)
    rt("run", "-d", "-b", str(b), "c1")
    pid = rt.state("c1")["pid"]
    for _ in range(100):
        if rt.output.exists() and "100000" in rt.output.read_text():
            break
        __import__("time").sleep(0.05)
    out = rt.output.read_text().split()
    assert out[:4] == ["0", "0", "100000", "65536"]
    host_uid = next(l for l in open(f"/proc/{pid}/status") if l.startswith("Uid:")).split()[1]
    assert host_uid == "100000"
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    rt("delete", "--force", "c1")


def test_user_namespace_with_in_container_hooks(rt, bundle, open_dir):
    """createContainer hooks run inside the init, which in a user namespace mapped to an
    unprivileged host uid cannot read the Python installation (/root/...): what the init
    needs for them is loaded by the runtime before the fork."""
    shared = open_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    marker = shared / "hooked"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"echo ran >> {marker}"]}

    def edit(config):
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        config["hooks"] = {"createContainer": [hook]}

    b = bundle("true", copy=True, edit=edit, base=open_dir)
    subprocess.run(["chown", "-R", "-h", "100000:100000", str(b / "rootfs")], check=True)
    rt("run", "-b", str(b), "c1")
    assert marker.read_text() == "ran\n"

