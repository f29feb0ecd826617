"""Cgroup limits that hold: memory (OOM kill), pids (fork bomb), values written, update,
cleanup on delete. The tests marked `cgroups` run twice: on this host (cgroup v1 here) and
in the lightvm guest (cgroup v2), same body; they read the cgroup through `rt`, which
reads where the runtime runs."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from backends.linux_native.cgroups import host_mode


def _cgroup(rt, cid: str) -> dict:
    return rt.saved(cid)["cgroup"]


def _file(rt, cid: str, controller: str, name: str) -> str:
    cg = _cgroup(rt, cid)
    base = cg["paths"][controller] if cg["version"] == 1 else cg["path"]
    return rt.read(os.path.join(base, name)).strip()


def _keyed(text: str, key: str) -> int:
    return next(int(line.split()[1]) for line in text.splitlines() if line.split()[0] == key)


def _oom_kills(rt, cid: str) -> int:
    """The kernel's count of OOM kills in the container's memory cgroup."""
    v1 = _cgroup(rt, cid)["version"] == 1
    return _keyed(_file(rt, cid, "memory", "memory.oom_control" if v1 else "memory.events"), "oom_kill")


@pytest.mark.cgroups
def test_memory_limit_ends_in_oom_kill(rt, bundle):
    def edit(config):
        config["linux"]["resources"]["memory"] = {"limit": 32 << 20, "swap": 32 << 20}

    # the shell holds the whole 64 MiB string in memory
    b = bundle("sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived ${#x}", edit=edit)
    rt("run", "-d", "-b", str(b), "c1")
    for _ in range(200):
        if rt.state("c1")["status"] == "stopped":
            break
        time.sleep(0.05)
    assert rt.state("c1")["status"] == "stopped"
    assert _oom_kills(rt, "c1") >= 1
    assert "survived" not in rt.out()
    assert rt.state("c1")["status"] == "stopped"
    rt("delete", "c1")


@pytest.mark.cgroups
def test_oom_kill_is_an_event(rt, bundle):
    """`events` streams {"type": "oom"} when the kernel kills for memory in the container
    (runc's events), and `events --stats` reports the limit and the oom_kill count."""
    def edit(config):
        config["linux"]["resources"]["memory"] = {"limit": 32 << 20, "swap": 32 << 20}

    b = bundle("sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived ${#x}", edit=edit)
    rt("create", "-b", str(b), "c1")
    stats = json.loads(rt("events", "--stats", "c1").stdout)
    assert stats["type"] == "stats" and stats["id"] == "c1"
    assert stats["data"]["memory"]["usage"]["limit"] == 32 << 20
    assert stats["data"]["memory"]["oom_kill"] == 0
    assert stats["data"]["pids"]["current"] == 1, stats  # the created init, waiting for start
    assert isinstance(stats["data"]["cpu"]["usage"]["total"], int), stats
    events = rt.spawn("events", "--interval", "10s", "c1")
    try:
        time.sleep(0.5)  # registered before the container runs
        rt("start", "c1")
        out, err = events.communicate(timeout=30)  # ends when the init exits
    finally:
        events.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    assert {"type": "oom", "id": "c1"} in lines, (out, err)
    assert events.returncode == 0, err
    assert _oom_kills(rt, "c1") >= 1
    assert rt("events", "--stats", "c1", check=False).returncode != 0  # stopped, as runc
    rt("delete", "c1")


@pytest.mark.cgroups
def test_update_from_a_resources_file(rt, bundle):
    """`update -r FILE` (runc's --resources) and `-r -` (stdin) take linux.resources JSON."""
    def edit(config):
        config["linux"]["resources"].update(memory={"limit": 64 << 20}, pids={"limit": 100}, cpu={"shares": 512})

    rt("run", "-d", "-b", str(bundle("sleep", "100", edit=edit)), "c1")
    res = os.path.join(os.path.dirname(str(rt.root)), "resources.json")
    rt.write(res, json.dumps({"memory": {"limit": 96 << 20}, "pids": {"limit": 40}, "cpu": {"shares": 256}}))
    rt("update", "-r", res, "c1")
    v1 = _cgroup(rt, "c1")["version"] == 1
    memory_file, shares_file = ("memory.limit_in_bytes", "cpu.shares") if v1 else ("memory.max", "cpu.weight")
    assert _file(rt, "c1", "memory", memory_file) == str(96 << 20)
    assert _file(rt, "c1", "pids", "pids.max") == "40"
    assert _file(rt, "c1", "cpu", shares_file) == ("256" if v1 else "10")  # v2: runc's shares->weight scale
    rt("update", "-r", "-", "c1", input=json.dumps({"pids": {"limit": 30}}))
    assert _file(rt, "c1", "pids", "pids.max") == "30"
    assert _file(rt, "c1", "memory", memory_file) == str(96 << 20)  # untouched
    # the saved config follows, so a later reader sees the limits in force
    saved = rt.saved("c1")["config"]["linux"]["resources"]
    assert saved["pids"]["limit"] == 30 and saved["memory"]["limit"] == 96 << 20
    bad = rt("update", "-r", "-", "c1", input="{not json", check=False)
    assert bad.returncode != 0
    rt("delete", "--force", "c1")


@pytest.mark.cgroups
def test_pids_limit_holds_a_fork_bomb(rt, bundle):
    def edit(config):
        config["linux"]["resources"]["pids"] = {"limit": 16}

    # The timer is forked first; the bomb subshell forks until the kernel says no; then
    # only builtins (read, echo) run, as no fork is left.
    script = (
        "sleep 2 & s=$!; (while true; do sleep 30 & done) 2>/dev/null & wait $s; "
        "f=/sys/fs/cgroup/pids/pids.current; [ -e $f ] || f=/sys/fs/cgroup/pids.current; read n < $f; echo pids=$n"
    )
    b = bundle("sh", "-c", script, edit=edit)
    rt("run", "-d", "-b", str(b), "c1")
    for _ in range(200):
        if rt.state("c1")["status"] == "stopped":
            break
        time.sleep(0.05)
    out = rt.out()
    current = int(out.split("pids=")[1].split()[0])
    assert 8 <= current <= 16, out
    events = _file(rt, "c1", "pids", "pids.events")
    assert _keyed(events, "max") > 0, events  # "max N": N forks refused
    rt("delete", "c1")


@pytest.mark.cgroups
def test_cgroup_values_update_and_cleanup(rt, bundle):
    def edit(config):
        config["linux"]["resources"].update(
            memory={"limit": 64 << 20, "reservation": 32 << 20},
            cpu={"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
            pids={"limit": 100},
        )
        config["linux"]["cgroupsPath"] = "/hostrt-test/c1"

    b = bundle("sleep", "100", edit=edit)
    rt("run", "-d", "-b", str(b), "c1")
    cg = _cgroup(rt, "c1")
    if cg["version"] == 1:
        assert _file(rt, "c1", "memory", "memory.limit_in_bytes") == str(64 << 20)
        assert _file(rt, "c1", "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
        assert _file(rt, "c1", "cpu", "cpu.shares") == "512"
        assert _file(rt, "c1", "cpu", "cpu.cfs_quota_us") == "50000"
        assert _file(rt, "c1", "cpuset", "cpuset.cpus") == "0"
        assert _file(rt, "c1", "pids", "pids.max") == "100"
        assert cg["paths"]["memory"].endswith("/hostrt-test/c1")
        pid = rt.state("c1")["pid"]
        assert str(pid) in _file(rt, "c1", "memory", "cgroup.procs").split()
        rt("update", "--memory", "128m", "--pids-limit", "50", "--cpu-quota", "20000", "c1")
        assert _file(rt, "c1", "memory", "memory.limit_in_bytes") == str(128 << 20)
        assert _file(rt, "c1", "pids", "pids.max") == "50"
        assert _file(rt, "c1", "cpu", "cpu.cfs_quota_us") == "20000"
        paths = list(cg["paths"].values())
    else:
        assert _file(rt, "c1", "", "memory.max") == str(64 << 20)
        assert _file(rt, "c1", "", "memory.low") == str(32 << 20)
        assert _file(rt, "c1", "", "cpu.weight") == "20"  # shares 512 on runc's scale
        assert _file(rt, "c1", "", "cpu.max") == "50000 100000"
        assert _file(rt, "c1", "", "cpuset.cpus") == "0"
        assert _file(rt, "c1", "", "pids.max") == "100"
        assert cg["path"].endswith("/hostrt-test/c1")
        pid = rt.state("c1")["pid"]
        assert str(pid) in _file(rt, "c1", "", "cgroup.procs").split()
        rt("update", "--memory", "128m", "--pids-limit", "50", "--cpu-quota", "20000", "c1")
        assert _file(rt, "c1", "", "memory.max") == str(128 << 20)
        assert _file(rt, "c1", "", "pids.max") == "50"
        assert _file(rt, "c1", "", "cpu.max") == "20000 100000"
        paths = [cg["path"]]
    rt("delete", "--force", "c1")
    for path in paths:
        assert not rt.exists(path)


@pytest.mark.cgroups
def test_block_io_weight_is_written_on_the_kernel_scale(rt, bundle):
    """blockIO.weight (v1's 10-1000 scale, `docker run --blkio-weight`): v1's blkio weight
    file as it is; v2's io.bfq.weight as it is where BFQ offers one, else io.weight on its
    1-10000 scale (runc's and crun's conversion)."""
    def edit(config):
        config["linux"]["resources"]["blockIO"] = {"weight": 500}

    rt("run", "-d", "-b", str(bundle("sleep", "100", edit=edit)), "c1")
    cg = _cgroup(rt, "c1")
    base = cg["paths"]["blkio"] if cg["version"] == 1 else cg["path"]
    names = ("blkio.weight", "blkio.bfq.weight") if cg["version"] == 1 else ("io.bfq.weight", "io.weight")
    name = next(n for n in names if rt.exists(os.path.join(base, n)))
    value = rt.read(os.path.join(base, name)).split("\n")[0].removeprefix("default ").strip()
    assert value == ("4950" if name == "io.weight" else "500"), (name, value)
    rt("delete", "--force", "c1")


def _cpu_limit(rt, cid: str) -> tuple[int, int]:
    """(quota, period) in microseconds, -1 for no quota: v1's two files or v2's cpu.max."""
    if _cgroup(rt, cid)["version"] == 1:
        return int(_file(rt, cid, "cpu", "cpu.cfs_quota_us")), int(_file(rt, cid, "cpu", "cpu.cfs_period_us"))
    quota, period = _file(rt, cid, "", "cpu.max").split()
    return (-1 if quota == "max" else int(quota)), int(period)


@pytest.mark.cgroups
def test_cpu_quota_and_period_update_one_at_a_time(rt, bundle):
    """`update --cpu-period` alone keeps the quota in force, and a quota alone keeps the
    period: two files on v1, one (cpu.max) on v2, where writing one half must not reset
    the other (a lost quota is a container without its CPU limit)."""
    def edit(config):
        config["linux"]["resources"]["cpu"] = {"quota": 50000, "period": 100000}

    rt("run", "-d", "-b", str(bundle("sleep", "100", edit=edit)), "c1")
    assert _cpu_limit(rt, "c1") == (50000, 100000)
    rt("update", "--cpu-period", "200000", "c1")
    assert _cpu_limit(rt, "c1") == (50000, 200000)
    rt("update", "--cpu-quota", "30000", "c1")
    assert _cpu_limit(rt, "c1") == (30000, 200000)
    rt("update", "-r", "-", "c1", input=json.dumps({"cpu": {"quota": -1}}))
    assert _cpu_limit(rt, "c1") == (-1, 200000)
    rt("delete", "--force", "c1")


@pytest.mark.cgroups
def test_refused_limit_fails_create_and_leaves_nothing(rt, bundle):
    """The limits are written while the container process already exists (it unshares its
    namespaces meanwhile): a limit the kernel refuses must still fail create cleanly."""
    def edit(config):
        config["linux"]["resources"]["cpu"] = {"cpus": "9999"}
        config["linux"]["cgroupsPath"] = "/hostrt-test/refused"

    proc = rt("create", "-b", str(bundle("true", edit=edit)), "c1", check=False)
    assert proc.returncode == 1 and "cpuset.cpus" in proc.stderr
    assert rt.ids() == [] and not rt.exists(f"{rt.root}/c1")
    assert not rt.exists("/sys/fs/cgroup/hostrt-test/refused")
    assert not any(rt.exists(f"/sys/fs/cgroup/{c}/hostrt-test/refused") for c in rt.listdir("/sys/fs/cgroup"))


@pytest.mark.cgroups
def test_container_sees_its_own_cgroup(rt, bundle):
    b = bundle("cat", "/proc/self/cgroup")
    out = rt("run", "-b", str(b), "c1").stdout
    # with a cgroup namespace every controller's path is the namespace root
    assert all(line.endswith(":/") for line in out.splitlines()), out


@pytest.mark.skipif(host_mode() != "v1", reason="checks the v1 layout of /sys/fs/cgroup")
def test_v1_cgroup_mount_layout(rt, bundle):
    b = bundle("sh", "-c", "ls /sys/fs/cgroup; cat /sys/fs/cgroup/pids/pids.max", edit=lambda c: c["linux"]["resources"].__setitem__("pids", {"limit": 42}))
    out = rt("run", "-b", str(b), "c1").stdout.split()
    assert "memory" in out and "pids" in out and "freezer" in out
    assert out[-1] == "42"
