"""Device access control: the rules of linux.resources.devices, then the defaults, hold in
every container, on cgroup v1 (devices controller) and cgroup v2 (a BPF device program).

The program's logic is checked against the rules' meaning by running its instructions in
a small interpreter; the kernel's enforcement on a real cgroup2 hierarchy (this hybrid
host's /sys/fs/cgroup/unified, or a v2 host's root) and in containers: a container must not
reach the kernel log (c 1:11) or the host's disk, whatever the spec leaves out."""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import stat
import tempfile
import time

import pytest

from backends.linux_native.cgroups import bpf_prog, device_rules, devices_bpf
from backends.linux_native.cgroups.v2 import V2Manager
from backends.linux_native.errors import ConfigError
from tests.native.conftest import cgroup2_root


CGROUP2 = cgroup2_root()
needs_cgroup2 = pytest.mark.skipif(CGROUP2 is None, reason="no cgroup2 hierarchy mounted")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups, bpf, mknod)")


@functools.cache
def _block_device() -> tuple[int, int]:
    """major:minor of a block device the host's root can read: the disk under / when this
    machine lets it (not here: reading vda is refused outside any container), else loop0."""
    candidates = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == "/":
                major, minor = (int(n) for n in fields[2].split(":"))
                if major and os.path.exists(f"/sys/dev/block/{major}:{minor}"):
                    candidates.append((major, minor))
    candidates.append((7, 0))
    scratch = tempfile.mkdtemp()
    try:
        for major, minor in candidates:
            node = os.path.join(scratch, f"{major}-{minor}")
            try:
                os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
                os.close(os.open(node, os.O_RDONLY | os.O_NONBLOCK))
                return major, minor
            except OSError:
                continue
    finally:
        shutil.rmtree(scratch)
    pytest.skip("no block device the host itself can open")


# --- the program's logic, instruction by instruction ------------------------------------

_ACCESS = {"m": 1, "r": 2, "w": 4}


def _run(program: bytes, kind: str, major: int, minor: int, access: int) -> int:
    """Execute the instructions the way the kernel does, for the opcodes they may use."""
    ctx = (((access << 16) | {"b": 1, "c": 2}[kind]).to_bytes(4, "little") + major.to_bytes(4, "little")
           + minor.to_bytes(4, "little"))
    regs: list = [0] * 11
    regs[1] = "ctx"  # R1 points at the context until the program reuses it
    mask32, mask64 = (1 << 32) - 1, (1 << 64) - 1
    pc = steps = 0
    while True:
        steps += 1
        assert steps <= len(program) // 8, "a jump went backwards"
        raw = int.from_bytes(program[pc * 8:pc * 8 + 8], "little")
        code, dst, src = raw & 0xFF, (raw >> 8) & 0xF, (raw >> 12) & 0xF
        off = (raw >> 16) & 0xFFFF
        off -= (off >> 15) << 16
        imm = raw >> 32
        imm64 = (imm - ((imm >> 31) << 32)) & mask64  # sign-extended, as the kernel does
        pc += 1
        if code == 0x61:  # ldx w
            assert src == 1 and regs[1] == "ctx" and off in (0, 4, 8)
            regs[dst] = int.from_bytes(ctx[off:off + 4], "little")
        elif code == 0x54:
            regs[dst] = regs[dst] & imm & mask32
        elif code == 0x74:
            regs[dst] = (regs[dst] & mask32) >> imm
        elif code == 0xBC:
            regs[dst] = regs[src] & mask32
        elif code == 0xB7:
            regs[dst] = imm64
        elif code in (0x55, 0x15):
            assert off >= 0
            if (regs[dst] != imm64) == (code == 0x55):
                pc += off
        elif code == 0x05:  # ja
            assert off >= 0
            pc += off
        elif code == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def _reference(rules: list[dict], kind: str, major: int, minor: int, access: int) -> int:
    """The rules' meaning: each requested bit is decided by the last rule that matches the
    device and holds the bit; nothing allowed before the first rule."""
    for bit in (1, 2, 4):
        if not access & bit:
            continue
        verdict = False
        for rule in rules:
            if ((rule.get("type") or "a") in ("a", kind) and rule.get("major", -1) in (-1, major)
                    and rule.get("minor", -1) in (-1, minor) and any(_ACCESS[c] & bit for c in rule.get("access", ""))):
                verdict = rule["allow"]
        if not verdict:
            return 0
    return 1


def _program(rules: list[dict]) -> bytes:
    return devices_bpf.assemble(tuple(device_rules.parse(r) for r in rules))


def _check_agrees(rules: list[dict], requests) -> None:
    prog = _program(rules)
    for kind, major, minor, access in requests:
        assert _run(prog, kind, major, minor, access) == _reference(rules, kind, major, minor, access), (
            rules, (kind, major, minor, access))


_ALL_REQUESTS = [(k, ma, mi, acc) for k in "bc" for ma in (1, 5, 7, 254) for mi in (0, 3, 11) for acc in range(1, 8)]


def test_program_follows_the_last_matching_rule_bit_by_bit():
    deny_all = {"allow": False, "access": "rwm"}
    cases = [
        [],
        [deny_all],
        [{"allow": True, "access": "rwm"}],
        [{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rwm"}],
        # split access on one device: an open for read and write passes
        [deny_all, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
         {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "w"}],
        # a later deny of write takes it out of an earlier rwm, also for an O_RDWR open
        [deny_all, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
         {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}],
        # a hole in a wildcard, which v1 cannot express
        [deny_all, {"allow": True, "type": "c", "major": 1, "access": "rw"},
         {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rw"}],
        [deny_all, {"allow": True, "type": "b", "access": "m"}, {"allow": True, "type": "c", "minor": 3, "access": ""}],
    ]
    for rules in cases:
        _check_agrees(rules, _ALL_REQUESTS)
    rng = random.Random(1311)
    for _ in range(300):
        rules = [
            {"allow": rng.random() < 0.6, **({"type": rng.choice("abc")} if rng.random() < 0.9 else {}),
             **({"major": rng.choice((1, 5, 7))} if rng.random() < 0.6 else {}),
             **({"minor": rng.choice((0, 3, 11))} if rng.random() < 0.6 else {}),
             "access": "".join(c for c in "rwm" if rng.random() < 0.6)}
            for _ in range(rng.randrange(0, 7))
        ]
        _check_agrees(rules, _ALL_REQUESTS)


def test_container_rules_end_with_the_defaults_and_deny_the_rest():
    prog = devices_bpf.assemble(device_rules.container_rules(None))
    read_write = _ACCESS["r"] | _ACCESS["w"]
    for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (136, 4), (10, 200)):
        assert _run(prog, "c", major, minor, read_write) == 1, (major, minor)
    assert _run(prog, "c", 1, 11, _ACCESS["m"]) == 1 and _run(prog, "b", 254, 0, _ACCESS["m"]) == 1  # mknod, as runc
    for kind, major, minor in (("c", 1, 11), ("c", 1, 1), ("c", 5, 1), ("c", 4, 1), ("b", 254, 0), ("b", 7, 0)):
        assert _run(prog, kind, major, minor, _ACCESS["r"]) == 0, (kind, major, minor)
        assert _run(prog, kind, major, minor, _ACCESS["w"]) == 0, (kind, major, minor)
    # the spec cannot take the defaults away: they come after its rules
    spec = [{"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    assert _run(devices_bpf.assemble(device_rules.container_rules(spec)), "c", 1, 3, read_write) == 1
    # a leading allow-all ends the program: nothing before it can be reached
    allow_all = devices_bpf.assemble(device_rules.container_rules([{"allow": True, "access": "rwm"}]))
    assert _run(allow_all, "b", 254, 0, read_write) == 1


@pytest.mark.parametrize("rule, named", [
    ({"allow": True, "type": "p", "access": "rwm"}, "type"),
    ({"allow": True, "type": "c", "access": "rwx"}, "access"),
    ({"allow": True, "type": "c", "major": 1 << 40, "access": "r"}, "major"),
    ({"allow": True, "type": "c", "minor": "3", "access": "r"}, "minor"),
])
def test_bad_rules_are_config_errors(rule, named):
    with pytest.raises(ConfigError, match=named):
        device_rules.parse(rule)


# --- the kernel's enforcement on a cgroup2 directory --------------------------------------


def _probe(directory: str, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """In the calling process: mknod each node in DIRECTORY, open it with each flag; the
    error names or "ok"."""
    found = {}
    for name, (kind, major, minor) in {"null": ("c", 1, 3), "kmsg": ("c", 1, 11), "disk": ("b", *_block_device())}.items():
        path = os.path.join(directory, name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        try:
            os.mknod(path, (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | 0o600, os.makedev(major, minor))
            found[(name, -1)] = "ok"
        except OSError as exc:
            found[(name, -1)] = os.strerror(exc.errno)
            continue
        for probe_name, flags in wanted:
            if probe_name != name:
                continue
            try:
                os.close(os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC))
                found[(name, flags)] = "ok"
            except OSError as exc:
                found[(name, flags)] = os.strerror(exc.errno)
    return found


def _probe_in(manager: V2Manager, directory: str, wanted) -> dict:
    """_probe in a child moved into MANAGER's cgroup first."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            manager.apply(os.getpid())
            result = _probe(directory, wanted)
            os.write(write_fd, json.dumps([[k[0], k[1], v] for k, v in result.items()]).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        data = f.read()
    os.waitpid(pid, 0)
    return {(name, flags): verdict for name, flags, verdict in json.loads(data)}


def _attached(path: str) -> list[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return bpf_prog.attached(fd)
    finally:
        os.close(fd)


def _program_exists(prog_id: int) -> bool:
    from backends.linux_native import syscalls

    attr = bytearray(12)
    attr[0:4] = prog_id.to_bytes(4, "little")
    try:
        os.close(syscalls.bpf(13, attr))  # BPF_PROG_GET_FD_BY_ID
        return True
    except FileNotFoundError:
        return False


def _freed(prog_id: int) -> bool:
    """Whether the kernel let go of the program, which it does when it frees the cgroup
    the program was attached to, some milliseconds after the rmdir."""
    deadline = time.monotonic() + 5
    while _program_exists(prog_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@needs_root
@needs_cgroup2
def test_v2_device_program_holds_and_is_replaced_on_update(tmp_path):
    """The v2 manager turns the rules into the cgroup's device program: the kernel log
    and the host's disk are refused, /dev/null works; new rules replace the program in
    place (the old one is freed at once); destroy removes the cgroup and the program with
    it."""
    _block_device()  # found by the host, before the child enters the cgroup
    manager = V2Manager.for_path(f"/hostrt-devices-test/{os.getpid()}", root=CGROUP2)
    rdonly, wronly, rdwr = os.O_RDONLY, os.O_WRONLY, os.O_RDWR
    wanted = [("null", rdwr), ("kmsg", rdonly), ("kmsg", wronly), ("kmsg", rdwr), ("disk", rdonly)]
    try:
        manager.create()
        manager.set({"devices": [{"allow": False, "access": "rwm"}]})
        first = _attached(manager.path)
        assert len(first) == 1
        seen = _probe_in(manager, str(tmp_path), wanted)
        assert seen[("null", rdwr)] == "ok"
        assert seen[("kmsg", -1)] == seen[("disk", -1)] == "ok"  # mknod of any node, as runc and Docker
        assert seen[("kmsg", rdonly)] == seen[("kmsg", wronly)] == seen[("disk", rdonly)] == os.strerror(1), seen

        manager.set({"devices": [{"allow": False, "access": "rwm"},
                                 {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]})
        second = _attached(manager.path)
        assert len(second) == 1 and second != first  # replaced, not added
        assert _freed(first[0])
        seen = _probe_in(manager, str(tmp_path), wanted)
        assert seen[("kmsg", rdonly)] == "ok"
        assert seen[("kmsg", wronly)] == seen[("kmsg", rdwr)] == seen[("disk", rdonly)] == os.strerror(1), seen

        manager.destroy()
        assert not os.path.exists(manager.path)
        assert _freed(second[0])
    finally:
        for path in (manager.path, os.path.dirname(manager.path)):
            try:
                os.rmdir(path)
            except OSError:
                pass


# --- containers ---------------------------------------------------------------------------

# Opening the kernel log for writing is the access the rules decide (`: >` writes nothing,
# so a failing run leaves no line in the host's log); the disk is only ever read.
_SCRIPT = (
    "mknod /dev/k c 1 11 && (: > /dev/k); echo kmsg=$?; "
    "mknod /dev/d b {major} {minor} && dd if=/dev/d of=/dev/null bs=512 count=1 2>/dev/null; echo disk=$?; "
    "echo y > /dev/null; echo null=$?; head -c 4 /dev/zero | wc -c"
)


def _with_mknod(config: dict, *more: str) -> None:
    """Docker gives root in a container CAP_MKNOD: the device rules are what stops it."""
    for key in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][key] += ["CAP_MKNOD", *more]


def _results(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _state_cgroup(rt, cid: str) -> dict:
    return rt.saved(cid)["cgroup"]


def _disk(rt) -> tuple[int, int]:
    """A disk for the container to be kept from: the host's (see _block_device); the v2 guest
    has none, so loop0's numbers there (the device program is asked before any driver is)."""
    return _block_device() if rt.where == "host" else (7, 0)


def _freed_where(rt, prog_id: int) -> bool:
    """_freed, asked where the runtime runs."""
    deadline = time.monotonic() + 5
    while rt.program_exists(prog_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _device_program_dir(rt, cid: str) -> str | None:
    cg = _state_cgroup(rt, cid)
    return cg["path"] if cg["version"] == 2 else cg["paths"].get("unified")


@needs_root
@pytest.mark.cgroups
def test_a_config_without_device_rules_still_denies_the_host_devices(rt, bundle):
    """A runtime-only caller (runtime-tools, a hand-written config) that sets no
    linux.resources.devices gets what runc gives: nothing but the default devices."""
    major, minor = _disk(rt)

    def edit(config):
        _with_mknod(config)
        config["linux"]["resources"].pop("devices", None)

    cid = f"devnone{os.getpid()}"
    proc = rt("run", "-b", str(bundle("sh", "-c", _SCRIPT.format(major=major, minor=minor), edit=edit)), cid, check=False)
    results = _results(proc.stdout)
    assert results["kmsg"] != "0" and results["disk"] != "0", proc.stdout + proc.stderr
    assert results["null"] == "0" and proc.stdout.split()[-1] == "4", proc.stdout + proc.stderr


@needs_root
@needs_cgroup2
@pytest.mark.cgroups
def test_device_program_holds_beside_the_v1_controller_and_goes_with_the_container(rt, bundle):
    """On this hybrid host the container's processes (exec'd ones too) are also in a cgroup2
    directory of their own with the device program attached: with the v1 devices
    controller opened wide from the host, the kernel log and the disk stay out of reach.
    Delete removes the directory, and the program goes with it."""
    major, minor = _disk(rt)
    cid = f"devhyb{os.getpid()}"
    rt("run", "-d", "-b", str(bundle("sleep", "100", edit=_with_mknod)), cid)
    directory = _device_program_dir(rt, cid)
    assert directory is not None, _state_cgroup(rt, cid)
    progs = rt.attached(directory)
    assert len(progs) == 1
    cg = _state_cgroup(rt, cid)
    if cg["version"] == 1 and "devices" in cg["paths"]:
        rt.write(os.path.join(cg["paths"]["devices"], "devices.allow"), "a")
    proc = rt("exec", cid, "sh", "-c", _SCRIPT.format(major=major, minor=minor), check=False)
    results = _results(proc.stdout)
    assert results["kmsg"] != "0" and results["disk"] != "0", proc.stdout + proc.stderr
    assert results["null"] == "0", proc.stdout + proc.stderr
    rt("delete", "--force", cid)
    assert not rt.exists(directory)
    assert _freed_where(rt, progs[0])


@needs_root
@pytest.mark.cgroups
def test_allow_rules_and_update_take_effect(rt, bundle):
    """A rule allowing c 1:11 for reading (what `docker run --device-cgroup-rule 'c 1:11 r'`
    adds) gives reading only; `update -r` with new rules replaces them in the running
    container. (Reading the kernel log also wants CAP_SYSLOG.)"""
    cid = f"devupd{os.getpid()}"

    def edit(config):
        _with_mknod(config, "CAP_SYSLOG")
        config["linux"]["resources"]["devices"].append({"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"})

    probe = "mknod /dev/k c 1 11 && { head -c 0 /dev/k; echo read=$?; (: > /dev/k) 2>/dev/null; echo write=$?; }"
    rt("run", "-d", "-b", str(bundle("sleep", "100", edit=edit)), cid)
    results = _results(rt("exec", cid, "sh", "-c", probe, check=False).stdout)
    assert results["read"] == "0" and results["write"] != "0", results
    directory = _device_program_dir(rt, cid)
    before = rt.attached(directory) if directory else []
    rt("update", "-r", "-", cid, input=json.dumps({"devices": [{"allow": False, "access": "rwm"}]}))
    results = _results(rt("exec", cid, "sh", "-c", "rm /dev/k; " + probe, check=False).stdout)
    assert results["read"] != "0" and results["write"] != "0", results
    if directory:
        after = rt.attached(directory)
        assert len(after) == 1 and after != before
    saved = rt.saved(cid)["config"]["linux"]["resources"]["devices"]
    assert saved == [{"allow": False, "access": "rwm"}]
    rt("delete", "--force", cid)


@needs_root
@pytest.mark.cgroups
def test_a_node_linux_devices_creates_is_usable(rt, bundle):
    """What `docker run --device /dev/kmsg` writes: the node in linux.devices and nothing
    in the rules; the runtime allows the node it creates (and only that one)."""
    def edit(config):
        config["linux"]["devices"] = [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]

    cid = f"devnode{os.getpid()}"
    out = rt("run", "-b", str(bundle("sh", "-c", "(: > /dev/kmsg); echo write=$?", edit=edit)), cid, check=False).stdout
    assert _results(out) == {"write": "0"}, out
