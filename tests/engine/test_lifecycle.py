"""Container commands end to end through the CLI, on the native backend, with the busybox image."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt

pytestmark = pytest.mark.root


def mounts_under(root: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(root))]


def record_ids(root: Path) -> set[str]:
    return {p.parent.name for p in (root / "containers").glob("*/record.json")}


def test_run_rm_prints_output_and_leaves_nothing(hostrt: Hostrt) -> None:
    before = record_ids(hostrt.root)
    done = hostrt("run", "--rm", "busybox", "echo", "hello")
    assert (done.returncode, done.stdout) == (0, "hello\n")
    assert record_ids(hostrt.root) == before
    assert not [m for m in mounts_under(hostrt.root) if "/containers/" in m and m.split("/containers/")[1][:64] not in before]


def test_exit_code_and_streams(hostrt: Hostrt) -> None:
    done = hostrt("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert done.returncode == 3
    assert done.stdout == "out\n" and done.stderr == "err\n"


@pytest.mark.parametrize(("command", "code", "named"), [("nosuch", 127, "nosuch"), ("/etc/passwd", 126, "/etc/passwd")])
def test_commands_that_cannot_run(hostrt: Hostrt, command: str, code: int, named: str) -> None:
    before = record_ids(hostrt.root)
    done = hostrt("run", "--rm", "busybox", command)
    assert done.returncode == code
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("hostrt: error: ") and named in done.stderr
    assert record_ids(hostrt.root) == before


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--pull", "never", "nosuchimage"], "nosuchimage"),
        (["--memory", "lots", "busybox", "true"], "--memory"),
        (["--memory", "1k", "busybox", "true"], "--memory"),
        (["-v", "relative:/x", "busybox", "true"], "-v"),
        (["--network", "bridge9", "busybox", "true"], "--network"),
        (["--pull", "never", "--platform", "windows/amd64", "busybox", "true"], "windows/amd64"),
    ],
)
def test_bad_input_is_one_line_125_and_creates_nothing(hostrt: Hostrt, args: list[str], named: str) -> None:
    before = record_ids(hostrt.root)
    done = hostrt("run", "--rm", *args)
    assert done.returncode == 125, done.stderr
    assert done.stderr.startswith("hostrt: error: ") and named in done.stderr.splitlines()[0]
    assert record_ids(hostrt.root) == before


def test_options_reach_the_process(hostrt: Hostrt, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from host\n")
    done = hostrt("run", "--rm", "-e", "GREETING=hi", "-w", "/tmp", "-u", "65534:65534", "-h", "box1",
                  "-v", f"{shared}:/data", "busybox", "sh", "-c",
                  "echo $GREETING; pwd; id -u; hostname; cat /data/in.txt")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:5] == ["hi", "/tmp", "65534", "box1", "from host"]
    done = hostrt("run", "--rm", "-v", f"{shared}:/data", "busybox", "sh", "-c", "echo written > /data/out.txt")
    assert done.returncode == 0, done.stderr
    assert (shared / "out.txt").read_text() == "written\n"
    done = hostrt("run", "--rm", "-v", f"{shared}:/data:ro", "busybox", "sh", "-c", "echo x > /data/ro.txt")
    assert done.returncode != 0 and not (shared / "ro.txt").exists()


def test_entrypoint_override_and_read_only(hostrt: Hostrt) -> None:
    done = hostrt("run", "--rm", "--entrypoint", "echo", "busybox", "via", "entrypoint")
    assert done.stdout == "via entrypoint\n"
    done = hostrt("run", "--rm", "--read-only", "busybox", "sh", "-c", "touch /x")
    assert done.returncode != 0 and "Read-only file system" in done.stderr


def test_detached_logs_stop_and_rm(hostrt: Hostrt) -> None:
    container_id = hostrt.ok("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                             "echo started; echo warn >&2; while true; do sleep 0.1; done").strip()
    assert len(container_id) == 64
    deadline = time.monotonic() + 10
    while "started" not in hostrt.ok("logs", "ticker") and time.monotonic() < deadline:
        time.sleep(0.1)
    logs = hostrt("logs", container_id[:8])
    assert logs.stdout == "started\n" and logs.stderr == "warn\n"
    assert "ticker" in hostrt.ok("ps")
    refused = hostrt("rm", "ticker")
    assert refused.returncode == 125 and "stop it first" in refused.stderr
    hostrt.ok("stop", "-t", "1", "ticker")
    state = json.loads(hostrt.ok("inspect", "ticker"))[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137, "sh as pid 1 ignores SIGTERM: SIGKILL after -t"
    assert "ticker" not in hostrt.ok("ps") and "ticker" in hostrt.ok("ps", "-a")
    hostrt.ok("rm", "ticker")
    assert container_id not in record_ids(hostrt.root)
    assert not [m for m in mounts_under(hostrt.root) if container_id in m]


def test_detached_exit_is_recorded_without_hostrt_running(hostrt: Hostrt) -> None:
    container_id = hostrt.ok("run", "-d", "busybox", "sh", "-c", "exit 42").strip()
    assert hostrt.ok("wait", container_id).strip() == "42"
    assert json.loads(hostrt.ok("inspect", container_id))[0]["State"]["ExitCode"] == 42
    hostrt.ok("rm", container_id)


def test_detached_rm_removes_itself(hostrt: Hostrt) -> None:
    container_id = hostrt.ok("run", "-d", "--rm", "busybox", "true").strip()
    deadline = time.monotonic() + 10
    while container_id in record_ids(hostrt.root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert container_id not in record_ids(hostrt.root)


def test_names_are_unique_and_prefixes_resolve(hostrt: Hostrt) -> None:
    first = hostrt.ok("create", "--name", "solo", "busybox", "true").strip()
    clash = hostrt("create", "--name", "solo", "busybox", "true")
    assert clash.returncode == 125 and "already in use" in clash.stderr
    assert json.loads(hostrt.ok("inspect", first[:10]))[0]["name"] == "solo"
    missing = hostrt("inspect", "no-such-container-or-image")
    assert missing.returncode == 125 and "no such image" in missing.stderr
    hostrt.ok("rm", "solo")


def test_exec_in_running_container(hostrt: Hostrt) -> None:
    hostrt.ok("run", "-d", "--name", "execme", "busybox", "sleep", "60")
    try:
        done = hostrt("exec", "-e", "X=1", "execme", "sh", "-c", "echo $X; exit 4")
        assert (done.returncode, done.stdout) == (4, "1\n")
        assert hostrt("exec", "execme", "nosuch").returncode == 127
    finally:
        hostrt.ok("rm", "-f", "execme")


def _log_lines(hostrt: Hostrt, name: str) -> int:
    return len(hostrt.ok("logs", name).splitlines())


@pytest.mark.cgroups
def test_pause_freezes_processes(hostrt: Hostrt) -> None:
    """A paused container's ticking stops (its log stands still) and resumes on unpause."""
    hostrt.ok("run", "-d", "--name", "freezer", "busybox", "sh", "-c", "while true; do echo tick; usleep 50000; done")
    try:
        deadline = time.monotonic() + 30
        while _log_lines(hostrt, "freezer") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        hostrt.ok("pause", "freezer")
        info = json.loads(hostrt.ok("inspect", "freezer"))[0]
        assert info["State"]["Paused"] is True
        status = hostrt.read(f"/proc/{info['State']['Pid']}/status")
        assert "(frozen)" in status or "State:\tD" in status or "State:\tS" in status
        time.sleep(0.3)  # a line being written when the freeze came is in the log by now
        frozen_at = _log_lines(hostrt, "freezer")
        time.sleep(0.5)
        assert _log_lines(hostrt, "freezer") == frozen_at, "a paused container went on ticking"
        hostrt.ok("unpause", "freezer")
        assert json.loads(hostrt.ok("inspect", "freezer"))[0]["State"]["Status"] == "running"
        deadline = time.monotonic() + 30
        while _log_lines(hostrt, "freezer") == frozen_at and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _log_lines(hostrt, "freezer") > frozen_at, "the container did not tick again after unpause"
    finally:
        hostrt.ok("rm", "-f", "freezer")


@pytest.mark.cgroups
def test_limits_reach_the_container_cgroup(hostrt: Hostrt) -> None:
    """--memory, --cpus and --pids-limit as the container's own cgroup files show them, v1
    (memory/, cpu/, pids/) or v2 (one directory): the same numbers either way."""
    script = ("cd /sys/fs/cgroup; if [ -e memory.max ]; then cat memory.max cpu.max pids.max; "
              "else cat memory/memory.limit_in_bytes cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us pids/pids.max; fi")
    done = hostrt("run", "--rm", "--memory", "48m", "--cpus", "0.5", "--pids-limit", "33", "busybox", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(48 << 20), "50000", "100000", "33"], done.stdout


@pytest.mark.cgroups
def test_memory_limit_oom_kill_is_recorded(hostrt: Hostrt) -> None:
    done = hostrt("run", "--name", "hog", "--memory", "16m", "busybox", "sh", "-c",
                  "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done")
    assert done.returncode == 137
    state = json.loads(hostrt.ok("inspect", "hog"))[0]["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    hostrt.ok("rm", "hog")


@pytest.mark.cgroups
def test_pids_limit_holds_a_fork_bomb(hostrt: Hostrt) -> None:
    # A child shell forks until it cannot (and dies of it); the parent then counts the
    # processes with builtins only, since nothing more can fork.
    done = hostrt("run", "--rm", "--pids-limit", "20", "busybox", "sh", "-c",
                  'sh -c "while true; do sleep 5 & done" 2>/dev/null; set -- /proc/[0-9]*; echo $#', timeout=60)
    assert 10 <= int(done.stdout.strip().splitlines()[-1]) <= 20, done.stdout + done.stderr


@pytest.mark.cgroups
def test_host_devices_stay_out_of_reach(hostrt: Hostrt) -> None:
    """Docker's device rules: root in the container may mknod (CAP_MKNOD, `c *:* m`), but
    not open the node of the kernel log (c 1:11) or of a disk (b 7:0, loop0); the standard
    devices work."""
    script = ("mknod /dev/k c 1 11; echo mknod=$?; (: > /dev/k); echo kmsg=$?; "
              "mknod /dev/d b 7 0 && dd if=/dev/d of=/dev/null count=1; echo disk=$?; "
              "echo y > /dev/null; echo null=$?; head -c 3 /dev/zero | wc -c")
    done = hostrt("run", "--rm", "busybox", "sh", "-c", script)
    results = dict(line.split("=") for line in done.stdout.split() if "=" in line)
    assert results == {"mknod": "0", "kmsg": "1", "disk": "1", "null": "0"}, done.stdout + done.stderr
    assert done.stdout.split()[-1] == "3" and done.stderr.count("Operation not permitted") == 2, done.stderr


def test_an_image_in_use_cannot_be_removed(hostrt: Hostrt) -> None:
    container_id = hostrt.ok("create", "busybox", "true").strip()
    refused = hostrt("rmi", "busybox")
    assert refused.returncode == 125 and container_id[:12] in refused.stderr
    assert "busybox:latest" in hostrt.ok("images")
    hostrt.ok("rm", container_id)


def test_cp_both_ways_stays_inside_the_container(hostrt: Hostrt, tmp_path: Path) -> None:
    hostrt.ok("run", "--name", "cpbox", "busybox", "sh", "-c",
              "echo inside > /data.txt; ln -s / /escape; ln -s /etc/../../.. /up")
    try:
        hostrt.ok("cp", "cpbox:/data.txt", str(tmp_path / "out.txt"))
        assert (tmp_path / "out.txt").read_text() == "inside\n"
        (tmp_path / "in.txt").write_text("from host\n")
        hostrt.ok("cp", str(tmp_path / "in.txt"), "cpbox:/escape/tmp/in.txt")
        hostrt.ok("cp", str(tmp_path / "in.txt"), "cpbox:/up/in2.txt")
        assert not Path("/tmp/in.txt").exists() and not Path("/in2.txt").exists(), "symlinks resolve inside the rootfs"
        rootfs = hostrt.root / "containers" / json.loads(hostrt.ok("inspect", "cpbox"))[0]["id"] / "rootfs"
        assert (rootfs / "tmp" / "in.txt").read_text() == "from host\n" and (rootfs / "in2.txt").exists()
        missing = hostrt("cp", "cpbox:/no/such", str(tmp_path))
        assert missing.returncode == 125 and "no such file" in missing.stderr
    finally:
        hostrt.ok("rm", "-f", "cpbox")


def test_top_lists_the_container_processes(hostrt: Hostrt) -> None:
    hostrt.ok("run", "-d", "--name", "topbox", "busybox", "sh", "-c", "sleep 300 & sleep 301")
    try:
        deadline = time.monotonic() + 10
        while "sleep 300" not in (listing := hostrt.ok("top", "topbox")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "sleep 300" in listing and "sleep 301" in listing
    finally:
        hostrt.ok("rm", "-f", "topbox")


def test_system_df_counts_images(hostrt: Hostrt) -> None:
    listing = hostrt.ok("system", "df")
    images = next(line for line in listing.splitlines() if line.startswith("Images"))
    assert float(images.split()[-1].removesuffix("MB")) > 0.5
