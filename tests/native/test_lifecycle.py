"""The state machine, exit codes, signals, and error reporting of the runtime CLI."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest


def test_run_returns_exit_code_and_output(rt, bundle):
    b = bundle("sh", "-c", "echo hello; exit 3")
    proc = rt("run", "--bundle", str(b), "c1", check=False)
    assert proc.returncode == 3
    assert proc.stdout == "hello\n"
    assert rt.ids() == []


def _no_pid_ns(config):
    # PID 1 of a PID namespace ignores signals it has no handler for: share the host's.
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "pid"]


def test_run_reports_death_by_signal(rt, bundle):
    b = bundle("sh", "-c", "kill -USR1 $$", edit=_no_pid_ns)
    assert rt("run", "-b", str(b), "c1", check=False).returncode == 128 + 10


def test_create_start_state_delete(rt, bundle):
    b = bundle("sleep", "100")
    pid_file = b / "pid"
    rt("create", "--bundle", str(b), "--pid-file", str(pid_file), "c1")
    st = rt.state("c1")
    assert st["status"] == "created"
    assert st["id"] == "c1" and st["bundle"] == str(b) and st["ociVersion"]
    assert int(pid_file.read_text()) == st["pid"]
    # before start the init is still the runtime's code, waiting on the FIFO
    assert "sleep" not in open(f"/proc/{st['pid']}/cmdline").read()
    rt("start", "c1")
    assert rt.state("c1")["status"] == "running"
    assert open(f"/proc/{st['pid']}/cmdline").read().startswith("sleep")
    assert rt("start", "c1", check=False).returncode == 1
    assert rt("delete", "c1", check=False).returncode == 1  # running: needs --force
    rt("kill", "c1", "KILL")
    _wait_status(rt, "c1", "stopped")
    assert rt.state("c1")["pid"] == 0
    rt("delete", "c1")
    assert rt("state", "c1", check=False).returncode == 1


def _wait_status(rt, cid, status, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rt.state(cid)["status"] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"{cid} never became {status}: {rt.state(cid)}")


@pytest.mark.parametrize("signal", ["TERM", "SIGTERM", "15"])
def test_kill_signal_names_and_numbers(rt, bundle, signal):
    # sh as PID 1 ignores TERM unless it traps it
    b = bundle("sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.1; done")
    rt("run", "-d", "-b", str(b), "c1")
    rt("kill", "c1", signal)
    _wait_status(rt, "c1", "stopped")


@pytest.mark.cgroups
def test_kill_all_reaches_every_process(rt, bundle):
    """`ps` and `kill --all` find the container's processes in its cgroup."""
    b = bundle("sh", "-c", "sleep 100 & sleep 100 & wait")
    b_cfg = json.loads(rt.read(f"{b}/config.json"))
    assert any(ns["type"] == "pid" for ns in b_cfg["linux"]["namespaces"])
    rt("run", "-d", "-b", str(b), "c1")
    for _ in range(50):
        pids = json.loads(rt("ps", "--format", "json", "c1").stdout)
        if len(pids) == 3:
            break
        time.sleep(0.1)
    assert len(pids) == 3
    rt("kill", "--all", "c1", "KILL")
    for pid in pids:
        for _ in range(100):
            try:
                if rt.read(f"/proc/{pid}/stat").split(") ")[1][0] == "Z":
                    break
            except FileNotFoundError:
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"{pid} survived kill --all")


def test_kill_and_pause_refused_when_stopped(rt, bundle):
    b = bundle("true")
    rt("run", "-d", "-b", str(b), "c1")
    _wait_status(rt, "c1", "stopped")
    assert rt("kill", "c1", "KILL", check=False).returncode == 1
    assert rt("pause", "c1", check=False).returncode == 1
    rt("delete", "c1")


def test_duplicate_id_refused(rt, bundle):
    b = bundle("sleep", "100")
    rt("create", "-b", str(b), "c1")
    proc = rt("create", "-b", str(b), "c1", check=False)
    assert proc.returncode == 1 and "exists" in proc.stderr
    rt("delete", "c1")  # created: delete kills it without --force


def test_missing_executable_fails_create_with_json_log(rt, bundle):
    b = bundle("/bin/does-not-exist")
    proc = rt("create", "-b", str(b), "c1", check=False)
    assert proc.returncode == 1
    last = json.loads(rt.log.read_text().splitlines()[-1])
    assert last["level"] == "error"
    assert "does-not-exist" in last["msg"]
    assert rt.ids() == []


def test_relative_root_survives_the_chdir_into_the_bundle(rt, bundle, tmp_path):
    """create works inside the bundle directory; a relative --root still names the
    directory it named where the command started."""
    from tests.native.conftest import RUNTIME

    b = bundle("true")
    cmd = [*RUNTIME, "--root", "relroot"]
    subprocess.run([*cmd, "create", "-b", str(b), "c1"], cwd=tmp_path, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    assert (tmp_path / "relroot" / "c1" / "state.json").is_file()
    subprocess.run([*cmd, "delete", "--force", "c1"], cwd=tmp_path, check=True, timeout=60)
    assert not (tmp_path / "relroot" / "c1").exists()


def test_delete_force_clears_a_create_killed_before_it_saved(rt, bundle):
    """A directory without state.json (create killed half-way) blocks the id until
    `delete --force` removes it."""
    (rt.root / "c1").mkdir(parents=True)
    os.mkfifo(rt.root / "c1" / "exec.fifo")
    assert "exists" in rt("create", "-b", str(bundle("true")), "c1", check=False).stderr
    rt("delete", "--force", "c1")
    assert not (rt.root / "c1").exists()
    rt("create", "-b", str(bundle("true")), "c1")
    rt("delete", "--force", "c1")


def test_unknown_container_is_an_error(rt):
    proc = rt("state", "nope", check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    assert rt("delete", "--force", "nope", check=False).returncode == 0


def test_list_and_features(rt, bundle):
    b = bundle("sleep", "100")
    rt("create", "-b", str(b), "c1")
    listed = json.loads(rt("list", "--format", "json").stdout)
    assert [c["id"] for c in listed] == ["c1"] and listed[0]["status"] == "created"
    assert "c1" in rt("list").stdout
    features = json.loads(rt("features").stdout)
    assert "user" in features["linux"]["namespaces"]
    assert features["ociVersionMax"] == "1.1.0"
    rt("delete", "--force", "c1")


def test_usage_errors(rt):
    assert rt("create", check=False).returncode == 2
    assert rt("bogus", check=False).returncode == 2
    assert rt("kill", "x", "NOSUCHSIG", check=False).returncode == 2


@pytest.mark.cgroups
def test_pause_resume_freezes_processes(rt, bundle):
    """A paused container does not run (its counter stands still) and the kernel says it is
    frozen: the v1 freezer's FROZEN, v2's "frozen 1" in cgroup.events; resume thaws it."""
    b = bundle("sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; usleep 20000; done", readonly=False)
    rt("run", "-d", "-b", str(b), "c1")
    pid = rt.state("c1")["pid"]
    counter = f"{b}/rootfs/tmp/n"

    def count() -> int:
        for _ in range(100):
            text = rt.read(counter).strip() if rt.exists(counter) else ""
            if text:
                return int(text)
            time.sleep(0.05)
        raise AssertionError("the container's counter never appeared")

    count()
    rt("pause", "c1")
    assert rt.state("c1")["status"] == "paused"
    cg = rt.saved("c1")["cgroup"]
    if cg["version"] == 1:
        assert rt.read(f"{cg['paths']['freezer']}/freezer.state").strip() == "FROZEN"
        # a frozen task shows D (cgroup v1 freezer, kernels >= 6.1) or T/t
        status = rt.read(f"/proc/{pid}/status")
        assert next(l for l in status.splitlines() if l.startswith("State:")).split()[1] in ("D", "T", "t")
    else:
        assert "frozen 1" in rt.read(f"{cg['path']}/cgroup.events").splitlines()
    frozen_at = count()
    time.sleep(0.5)
    assert count() == frozen_at, "the counter moved in a paused container"
    assert rt("exec", "c1", "true", check=False).returncode == 1
    rt("resume", "c1")
    assert rt.state("c1")["status"] == "running"
    for _ in range(100):
        if count() != frozen_at:
            break
        time.sleep(0.05)
    assert count() != frozen_at, "the counter stands still after resume"
    rt("delete", "--force", "c1")
    assert rt.ids() == []


@pytest.mark.cgroups
def test_delete_force_of_paused_container(rt, bundle):
    b = bundle("sleep", "100")
    rt("run", "-d", "-b", str(b), "c1")
    rt("pause", "c1")
    rt("delete", "--force", "c1")
    assert rt.ids() == []
