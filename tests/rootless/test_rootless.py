"""Rootless mode (hostrt/rootless): an ordinary user runs containers in a user namespace of
its own, as Podman does. Each test runs the real `hostrt` as a real unprivileged user."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.rootless.conftest import AsUser

pytestmark = pytest.mark.root


def _name() -> str:
    return f"rl-{uuid.uuid4().hex[:10]}"


def _subid_start(user: AsUser) -> int:
    for line in Path("/etc/subuid").read_text().splitlines():
        name, start, _ = line.split(":")
        if name == user.user.name:
            return int(start)
    raise AssertionError("the test user has no subuid range")


def _container_id(rootless: AsUser, name: str) -> str:
    return json.loads(rootless.ok("inspect", name))[0]["id"]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _user_pids(rootless: AsUser) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and proc.stat().st_uid == rootless.user.uid:
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _holder_mounts(rootless: AsUser) -> str:
    return Path(f"/proc/{rootless.holder_pid()}/mountinfo").read_text()


def test_run_is_root_inside_and_volume_files_belong_to_the_user(rootless: AsUser) -> None:
    rootless("mkdir", "-p", str(rootless.user.home / "vol"))
    out = rootless.ok("run", "--rm", "--network", "none", "-v", f"{rootless.user.home}/vol:/vol", "busybox", "sh", "-c",
                      "id -u; id -g; touch /vol/made; mkdir -p /vol/d; chown 1000:1000 /vol/d")
    assert out.split() == ["0", "0"]
    containers = rootless.user.home / ".local/share/hostrt/containers"
    assert not [p for p in containers.iterdir() if not p.name.startswith(".")], "--rm left a container directory"
    assert str(containers) not in _holder_mounts(rootless)
    made = (rootless.user.home / "vol" / "made").stat()
    assert (made.st_uid, made.st_gid) == (rootless.user.uid, rootless.user.gid)
    # container uid 1000 is subordinate id 999 of the range (uid 0 is the user itself)
    assert (rootless.user.home / "vol" / "d").stat().st_uid == _subid_start(rootless) + 999
    holder = rootless.holder_pid()
    assert Path(f"/proc/{holder}/uid_map").read_text().split() == [
        "0", str(rootless.user.uid), "1", "1", str(_subid_start(rootless)), "65536"]


def test_detached_container_exec_logs_ps_stop_rm_leave_nothing(rootless: AsUser) -> None:
    name = _name()
    rootless.ok("run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c", "echo started; exec sleep 300")
    cid = _container_id(rootless, name)
    assert name in rootless.ok("ps")
    assert rootless.ok("exec", name, "id", "-u").strip() == "0"
    assert "started" in rootless.ok("logs", name)
    pid = json.loads(rootless.ok("inspect", name))[0]["State"]["Pid"]
    holder = rootless.holder_pid()
    # the container, the engine server and the monitor all live in the user's namespace
    engine = [p for p in _user_pids(rootless) if b"hostrt.server" in _cmdline(p) or b"hostrt.engine.monitor" in _cmdline(p)]
    assert len(engine) == 2, "expected the engine server and the monitor"
    assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink(f"/proc/{holder}/ns/user")
    for member in engine:
        for kind in ("user", "mnt"):
            assert os.readlink(f"/proc/{member}/ns/{kind}") == os.readlink(f"/proc/{holder}/ns/{kind}")
    assert f"/containers/{cid}/rootfs" in _holder_mounts(rootless)
    rootless.ok("stop", "-t", "1", name)
    assert json.loads(rootless.ok("inspect", name))[0]["status"] == "exited"
    rootless.ok("rm", name)
    assert cid not in _holder_mounts(rootless)
    assert not (rootless.user.home / ".local/share/hostrt/containers" / cid).exists()
    assert not Path(f"/proc/{pid}").exists()


def test_bind_of_the_users_own_file(rootless: AsUser) -> None:
    rootless("sh", "-c", "echo mine > ~/own.txt && chmod 600 ~/own.txt")
    out = rootless.ok("run", "--rm", "--network", "none", "-v", f"{rootless.user.home}/own.txt:/own.txt:ro", "busybox",
                      "cat", "/own.txt")
    assert out.strip() == "mine"


def test_image_user_maps_into_the_subordinate_range(rootless: AsUser) -> None:
    name = _name()
    rootless.ok("run", "-d", "--name", name, "--network", "none", "--user", "1000:1000", "busybox", "sleep", "300")
    try:
        pid = json.loads(rootless.ok("inspect", name))[0]["State"]["Pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert set(uids) == {str(_subid_start(rootless) + 999)}
    finally:
        rootless.ok("rm", "-f", name)


def test_network_none_and_host(rootless: AsUser) -> None:
    links = rootless.ok("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    inside = rootless.ok("run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net").strip()
    assert inside == os.readlink("/proc/self/ns/net")


def test_limit_without_delegated_cgroup_is_refused_in_one_line(rootless: AsUser) -> None:
    unified = Path("/sys/fs/cgroup/cgroup.controllers").exists()  # v1 and hybrid hosts delegate nothing
    if unified and "no delegated cgroup v2 tree" not in rootless.ok("info"):
        pytest.skip("this host delegates a cgroup v2 tree to the user: limits apply there")
    done = rootless.hostrt("run", "--rm", "--network", "none", "--memory", "64m", "busybox", "true")
    assert done.returncode == 125
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--memory" in lines[0] and "rootless" in lines[0], done.stderr
    assert not list((rootless.user.home / ".local/share/hostrt/containers").glob("*/record.json"))  # nothing half-made


def test_a_user_network_is_refused_in_one_line_naming_what_works(rootless: AsUser) -> None:
    """User networks need bridges in the host's namespace; the default (slirp4netns) works."""
    done = rootless.hostrt("run", "--rm", "--network", "somenet", "busybox", "true")
    assert done.returncode == 125
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "slirp4netns" in lines[0] and "RTNETLINK" not in lines[0], done.stderr
    assert rootless.hostrt("run", "--rm", "busybox", "true").returncode == 0


def test_user_cannot_reach_roots_store(rootless: AsUser, busybox_archive: Path) -> None:
    """Root's store (made by the image fixture, in a directory any user may traverse) stays
    out of reach from inside the user's namespace, where the user is "root"."""
    root_store = busybox_archive.parent / "root"
    assert (root_store / "store").is_dir()
    probe = ("import os, sys\n"
             "from hostrt import rootless\n"
             "rootless.enter()\n"
             "assert os.getuid() == 0\n"
             "for path in sys.argv[1:]:\n"
             "    try:\n"
             "        os.listdir(path)\n"
             "        print('READ', path)\n"
             "    except PermissionError:\n"
             "        print('denied', path)\n")
    paths = [str(root_store / "store"), str(root_store / "layers"), str(root_store / "containers"), "/root"]
    done = rootless("python3", "-c", probe, *paths)
    assert done.returncode == 0, done.stderr
    assert "READ" not in done.stdout and done.stdout.count("denied") == len(paths), done.stdout
    bound = rootless.hostrt("run", "--rm", "--network", "none", "-v", f"{root_store}/store:/x", "busybox", "ls", "/x")
    assert bound.returncode != 0 and "sha256" not in bound.stdout
    other = rootless("hostrt", "images", env={"HOSTRT_ROOT": str(root_store)})
    assert other.returncode != 0 and "busybox" not in other.stdout


def test_user_without_subordinate_ids_gets_the_single_id_map(rootless_single: AsUser) -> None:
    out = rootless_single.ok("run", "--rm", "--network", "none", "busybox", "sh", "-c", "id -u; cat /proc/self/uid_map")
    lines = out.strip().splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(rootless_single.user.uid), "1"]
