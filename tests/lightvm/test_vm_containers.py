"""Containers in a real machine (under each hypervisor driver, QEMU under the probed accelerator,
TCG here), end to end through the CLI. One hostrt root for the module, so its machines stay warm between tests."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt
from tests.lightvm.conftest import DRIVERS, MACHINE_TESTS, kill_guest, machine_root
from tests.network.conftest import free_port, http_get
from tests.support.sockets import listeners

pytestmark = MACHINE_TESTS


@pytest.fixture(scope="module", params=DRIVERS)
def vm_hostrt(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, guest_cache: Path,
              apt_arch) -> Iterator[Hostrt]:  # type: ignore[no-untyped-def]
    apt_arch("arm64")
    yield from machine_root(tmp_path_factory, guest_cache, "vm-root", request.param)


def test_run_in_vm_reports_the_guest_kernel(vm_hostrt: Hostrt) -> None:
    done = vm_hostrt("run", "--backend", "lightvm", "--rm", "busybox", "sh", "-c", "uname -m; uname -r", timeout=900)
    assert done.returncode == 0, done.stderr
    arch, release = done.stdout.split()
    assert arch == "x86_64"
    assert release != os.uname().release, "the container ran on the guest's kernel, not the host's"
    machines = json.loads(vm_hostrt.ok("machine", "ls", "--format", "json"))
    assert [(m["name"], m["state"], m["driver"]) for m in machines] == [
        ("default", "running", vm_hostrt.env["HOSTRT_MACHINE_DRIVER"])]


def test_exit_codes_streams_and_stdin(vm_hostrt: Hostrt) -> None:
    done = vm_hostrt("run", "--backend", "lightvm", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, "out\n", "err\n")
    done = vm_hostrt("run", "--backend", "lightvm", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z", input="from host\n")
    assert done.stdout == "FROM HOST\n"
    missing = vm_hostrt("run", "--backend", "lightvm", "--rm", "busybox", "nosuch")
    assert missing.returncode == 127 and "nosuch" in missing.stderr


def test_detached_logs_and_stop(vm_hostrt: Hostrt) -> None:
    container_id = vm_hostrt.ok("run", "--backend", "lightvm", "-d", "busybox", "sh", "-c",
                                "echo up; while true; do sleep 1; done").strip()
    deadline = time.monotonic() + 60
    while "up" not in vm_hostrt.ok("logs", container_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert vm_hostrt.ok("logs", container_id) == "up\n"
    assert "lightvm" in vm_hostrt.ok("ps")
    vm_hostrt.ok("stop", "-t", "2", container_id, timeout=120)
    state = json.loads(vm_hostrt.ok("inspect", container_id))[0]["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    vm_hostrt.ok("rm", container_id)
    assert container_id not in vm_hostrt.ok("ps", "-a")


def test_arm64_image_runs_in_an_arm64_machine_without_asking(vm_hostrt: Hostrt) -> None:
    explain = vm_hostrt.ok("run", "--explain", "--platform", "linux/arm64", "busybox", "true")
    assert "backend: lightvm (qemu-system-aarch64, tcg)" in explain
    done = vm_hostrt("run", "--rm", "--platform", "linux/arm64", "busybox", "uname", "-m", timeout=1200)
    assert (done.returncode, done.stdout) == (0, "aarch64\n"), done.stderr


def test_a_killed_guest_is_a_clear_error(vm_hostrt: Hostrt) -> None:
    vm_hostrt.ok("run", "--backend", "lightvm", "--rm", "busybox", "true", timeout=900)  # the machine is up
    kill_guest(vm_hostrt)
    done = vm_hostrt("machine", "ssh", "default", "--", "true")
    assert done.returncode == 125
    assert done.stderr.startswith("hostrt: error: ") and "Traceback" not in done.stderr
    again = vm_hostrt("run", "--backend", "lightvm", "--rm", "busybox", "echo", "back", timeout=900)
    assert again.stdout == "back\n", "the next run boots the machine again"


def test_volume_round_trip_through_the_machine(vm_hostrt: Hostrt, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("from host\n")
    done = vm_hostrt("run", "--backend", "lightvm", "--rm", "-v", f"{tmp_path}:/data", "busybox", "sh", "-c",
                     "cat /data/in.txt; echo from the container > /data/out.txt", timeout=900)
    assert (done.returncode, done.stdout) == (0, "from host\n"), done.stderr
    assert (tmp_path / "out.txt").read_text() == "from the container\n"


def test_volume_outside_the_shares_is_refused(vm_hostrt: Hostrt) -> None:
    done = vm_hostrt("run", "--backend", "lightvm", "--rm", "-v", "/etc:/hostetc", "busybox", "true", timeout=900)
    assert done.returncode == 125 and "not shared with machine default" in done.stderr


def test_warm_run_goes_through_the_host_agent_without_ssh(vm_hostrt: Hostrt) -> None:
    vm_hostrt.ok("run", "--backend", "lightvm", "--rm", "busybox", "true", timeout=900)  # warm the machine
    # In a process of its own (no engine server, whose workers have everything imported), what
    # the command imports shows what it does.
    done = subprocess.run([os.sys.executable, "-X", "importtime", "-m", "hostrt", "run", "--backend", "lightvm", "--rm",
                           "busybox", "echo", "warm"], env={**vm_hostrt.env, "HOSTRT_SERVER": "0"}, capture_output=True,
                          text=True, timeout=300)
    assert done.stdout == "warm\n", done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "paramiko" not in imported, "a warm run reuses the agent's connection: no SSH handshake, no SSH library"
    assert "backends.lightvm.hostagent" in imported


def test_exec_and_pause_in_a_vm_container(vm_hostrt: Hostrt) -> None:
    container_id = vm_hostrt.ok("run", "--backend", "lightvm", "-d", "busybox", "sleep", "300", timeout=900).strip()
    try:
        done = vm_hostrt("exec", "-e", "X=in-vm", container_id, "sh", "-c", "echo $X; exit 5", timeout=300)
        assert (done.returncode, done.stdout) == (5, "in-vm\n"), done.stderr
        vm_hostrt.ok("pause", container_id, timeout=300)
        assert json.loads(vm_hostrt.ok("inspect", container_id, timeout=300))[0]["State"]["Paused"] is True
        vm_hostrt.ok("unpause", container_id, timeout=300)
        assert vm_hostrt("exec", container_id, "true", timeout=300).returncode == 0
    finally:
        vm_hostrt("rm", "-f", container_id, timeout=300)


# -- published ports (-p): host 127.0.0.1:PORT -> QEMU forward -> guest proxy -> the container's own namespace
def _get(port: int, path: str = "/hostname", timeout: float = 60) -> str:
    """GET through the published port, retrying while the server inside comes up (TCG: slow)."""
    return http_get(f"http://127.0.0.1:{port}{path}", timeout, request_timeout=20, pause=0.5)


def _status(hostrt: Hostrt, name: str) -> str | None:
    return next((c["status"] for c in json.loads(hostrt.ok("ps", "-a", "--format", "json")) if c["name"] == name), None)


def test_published_port_serves_httpd_from_a_vm_container(vm_hostrt: Hostrt) -> None:
    port = free_port()
    cid = vm_hostrt.ok("run", "--backend", "lightvm", "-d", "--name", "vmweb", "-p", f"127.0.0.1:{port}:80", "busybox",
                       "httpd", "-f", "-p", "80", "-h", "/etc", timeout=900).strip()
    try:
        assert _get(port) == cid[:12] + "\n", "the reply comes from the container's own /etc/hostname"
        assert listeners(port) == ["127.0.0.1"], "a VM's published port listens on loopback only"
        assert vm_hostrt.ok("port", "vmweb") == f"80/tcp -> 127.0.0.1:{port}\n"

        taken = vm_hostrt("run", "--backend", "lightvm", "--rm", "--name", "vmweb2", "-p", f"127.0.0.1:{port}:80",
                          "busybox", "true", timeout=300)
        assert taken.returncode == 125, taken.stderr
        assert taken.stderr.startswith("hostrt: error: ") and len(taken.stderr.splitlines()) == 1, taken.stderr
        assert f"127.0.0.1:{port}" in taken.stderr
        assert _status(vm_hostrt, "vmweb2") is None, "a refused start leaves no container behind"
        assert _get(port) == cid[:12] + "\n", "the first container still serves its port"

        vm_hostrt.ok("stop", "-t", "1", "vmweb", timeout=300)
        assert listeners(port) == [], "the forward goes with the container"
        assert vm_hostrt.ok("port", "vmweb") == ""
        vm_hostrt.ok("start", "vmweb", timeout=300)
        assert _get(port) == cid[:12] + "\n", "a restarted container publishes the same port again"
    finally:
        vm_hostrt("rm", "-f", "vmweb", timeout=300)
    assert listeners(port) == []


def test_attached_run_publishes_a_chosen_port_while_it_runs(vm_hostrt: Hostrt) -> None:
    run = subprocess.Popen([os.sys.executable, "-m", "hostrt", "run", "--backend", "lightvm", "--rm", "--name", "vmfg",
                            "-p", "127.0.0.1::80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"],
                           env=vm_hostrt.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline, published = time.monotonic() + 300, ""
        while not published and time.monotonic() < deadline and run.poll() is None:
            published = vm_hostrt("port", "vmfg").stdout.strip()
            time.sleep(0.5)
        assert published.startswith("80/tcp -> 127.0.0.1:"), run.stderr.read().decode() if run.poll() is not None else ""
        port = int(published.rsplit(":", 1)[1])
        assert "localhost" in _get(port, "/hosts")
        vm_hostrt.ok("stop", "-t", "1", "vmfg", timeout=300)
        assert run.wait(timeout=300) == 137
    finally:
        if run.poll() is None:
            run.kill()
            vm_hostrt("rm", "-f", "vmfg", timeout=300)
    assert listeners(port) == [], "the forward ends with the foreground run"


def test_a_guest_killed_during_a_run_is_a_clear_error_with_its_console(vm_hostrt: Hostrt) -> None:
    vm_hostrt.ok("run", "--backend", "lightvm", "--rm", "busybox", "true", timeout=900)  # the machine is up
    running = subprocess.Popen([sys.executable, "-m", "hostrt", "run", "--backend", "lightvm", "--rm", "busybox", "sh",
                                "-c", "echo started; sleep 120"], env=vm_hostrt.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert running.stdout is not None and running.stdout.readline() == "started\n"
    kill_guest(vm_hostrt)
    _out, err = running.communicate(timeout=120)
    assert running.returncode == 125, err
    assert err.startswith("hostrt: error: lost the connection to machine default") and "Traceback" not in err
    console = err.split("\n--- console ---\n", 1)
    assert len(console) == 2 and console[1].strip(), f"no console tail in: {err}"
    assert vm_hostrt("run", "--backend", "lightvm", "--rm", "busybox", "echo", "back", timeout=900).stdout == "back\n"


def test_an_exited_vm_container_and_a_killed_hostrt_leave_no_forward(vm_hostrt: Hostrt) -> None:
    port = free_port()
    vm_hostrt.ok("run", "--backend", "lightvm", "-d", "--name", "vmshort", "-p", f"127.0.0.1:{port}:80", "busybox",
                 "sh", "-c", "httpd -p 80 -h /etc; sleep 2", timeout=900)
    deadline = time.monotonic() + 120
    while _status(vm_hostrt, "vmshort") != "exited" and time.monotonic() < deadline:
        time.sleep(1)
    assert listeners(port) == [], "noticing the exit removes the forward"
    vm_hostrt.ok("rm", "vmshort")

    crashed = subprocess.run([os.sys.executable, "-m", "hostrt", "run", "--backend", "lightvm", "-d", "--name", "vmcrash",
                              "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "300"],
                             env={**vm_hostrt.env, "HOSTRT_FAILPOINT": "vm-after-forward"}, capture_output=True, timeout=900)
    assert crashed.returncode == -9
    assert listeners(port) == ["127.0.0.1"], "the crash left the forward up"
    prune = vm_hostrt.ok("system", "prune", timeout=300)
    assert listeners(port) == [], prune
    assert _status(vm_hostrt, "vmcrash") is None


def test_vm_ports_come_back_after_the_guest_monitor_is_killed(vm_hostrt: Hostrt) -> None:
    port = free_port()
    cid = vm_hostrt.ok("run", "--backend", "lightvm", "-d", "--name", "vmtake", "-p", f"127.0.0.1:{port}:80", "busybox",
                       "httpd", "-f", "-p", "80", "-h", "/etc", timeout=900).strip()
    try:
        assert _get(port) == cid[:12] + "\n"
        # (the pattern does not match this shell's own command line)
        vm_hostrt.ok("machine", "ssh", "default", "--", "for p in /proc/[0-9]*; do grep -q 'engine[.]monitor' "
                     "$p/cmdline 2>/dev/null && kill -9 ${p#/proc/}; done; true")
        with pytest.raises((OSError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=20).read()
        assert _status(vm_hostrt, "vmtake") == "running", "the container outlived the guest's monitor"
        assert _get(port, timeout=30) == cid[:12] + "\n", "the restarted guest monitor serves the port again"
    finally:
        vm_hostrt("rm", "-f", "vmtake", timeout=300)


def test_interactive_tty_in_a_vm_container(vm_hostrt: Hostrt) -> None:
    """-it through the machine: a pty in the guest, our terminal's size, typed keys, the exit code."""
    from tests.engine.test_tty import run_on_terminal

    code, screen = run_on_terminal(
        vm_hostrt, ["run", "--backend", "lightvm", "--rm", "-it", "busybox", "sh", "-c",
                    "echo READY; read line; tty; stty size; echo got:$line; exit 3"], b"hello\r", rows=27, cols=91,
        timeout=600)
    text = screen.decode(errors="replace")
    assert code == 3, text
    assert "/dev/pts/" in text and "27 91" in text and "got:hello" in text, text


def test_stop_saves_an_idle_machine_and_start_resumes_it(vm_hostrt: Hostrt, tmp_path: Path) -> None:
    """Suspend to disk: the saved state is private, restored once, the guest clock catches up,
    and volumes (9p, unmounted for the save) work again."""
    (tmp_path / "in.txt").write_text("before\n")
    vm_hostrt.ok("run", "--backend", "lightvm", "--rm", "-v", f"{tmp_path}:/data", "busybox", "cat", "/data/in.txt",
                 timeout=900)  # up, with a share mounted
    assert "(state saved)" in vm_hostrt.ok("machine", "stop", "default", timeout=300)
    machine = Path(json.loads(vm_hostrt.ok("machine", "inspect", "default"))["path"])
    assert oct((machine / "saved.state").stat().st_mode & 0o777) == "0o600", "guest RAM holds its host key"
    assert vm_hostrt.ok("machine", "ls").count("stopped") >= 1
    time.sleep(3)  # the guest's clock stands still meanwhile
    vm_hostrt.ok("machine", "start", "default", timeout=600)
    info = json.loads(vm_hostrt.ok("machine", "inspect", "default"))
    assert info["running"]["resumed"] is True and info["saved"] is None, "a state is used once"
    guest_time = int(vm_hostrt.ok("machine", "ssh", "default", "--", "date", "+%s"))
    assert abs(guest_time - time.time()) < 5
    done = vm_hostrt.ok("run", "--backend", "lightvm", "--rm", "-v", f"{tmp_path}:/data", "busybox", "sh", "-c",
                        "cat /data/in.txt; echo after > /data/out.txt", timeout=900)
    assert done == "before\n" and (tmp_path / "out.txt").read_text() == "after\n"
    assert "(state saved)" not in vm_hostrt.ok("machine", "stop", "--poweroff", "default", timeout=300)
    assert json.loads(vm_hostrt.ok("machine", "inspect", "default"))["saved"] is None


def test_an_idle_machine_stops_itself(vm_hostrt: Hostrt) -> None:
    """The host agent's idle clock: no command and no running container for idle_timeout_s -> stopped."""
    vm_hostrt.ok("machine", "init", "idler", "--idle-timeout", "3", timeout=600)
    vm_hostrt.ok("machine", "start", "idler", timeout=900)
    assert json.loads(vm_hostrt.ok("machine", "inspect", "idler"))["settings"]["idle_timeout_s"] == 3
    deadline = time.monotonic() + 120
    while json.loads(vm_hostrt.ok("machine", "inspect", "idler"))["running"] is not None:
        assert time.monotonic() < deadline, "the idle machine was not stopped"
        time.sleep(1)
    states = {m["name"]: m["state"] for m in json.loads(vm_hostrt.ok("machine", "ls", "--format", "json"))}
    assert states["idler"] == "stopped"
    facts = json.loads(vm_hostrt.ok("machine", "inspect", "idler"))
    assert facts["saved"] is not None, "idle: saved, not lost"
    assert _qemu_processes(facts["domain"]) == [], "a stopped machine holds no QEMU"
    vm_hostrt.ok("machine", "start", "idler", timeout=900)  # resumed from the saved state
    assert len(_qemu_processes(facts["domain"])) == 1
    vm_hostrt.ok("machine", "rm", "idler", timeout=120)
    assert _qemu_processes(facts["domain"]) == [] and not Path(facts["path"]).exists()


def _qemu_processes(domain: str) -> list[int]:
    """Pids of the QEMUs running a machine, found by the guest name either driver gives them."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"guest={domain},".encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_machine_qemu_is_detached_and_its_monitor_private(vm_hostrt: Hostrt) -> None:
    """QEMU outlives the command that started it (not its child), runs under its seccomp sandbox
    (no exec, no setuid: a guest that took over QEMU gets no further), and whatever controls it
    (the QEMU driver's QMP socket, libvirt's own) is not reachable by other users."""
    vm_hostrt.ok("run", "--backend", "lightvm", "--rm", "busybox", "true", timeout=900)
    facts = json.loads(vm_hostrt.ok("machine", "inspect", "default"))
    [pid] = _qemu_processes(facts["domain"])
    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert "hostrt" not in Path(f"/proc/{parent}/cmdline").read_bytes().decode(errors="replace")
    assert "Seccomp:\t2" in Path(f"/proc/{pid}/status").read_text()
    machine = Path(facts["path"])
    assert machine.stat().st_mode & 0o777 == 0o700
    if facts["driver"] == "qemu":
        assert int(facts["hypervisor"]["pid"]) == pid
        assert facts["hypervisor"]["qmp"] == "unix:qmp.sock" and (machine / "qmp.sock").is_socket()
        assert (machine / "console.log").stat().st_size > 0, "the serial console goes to a file"


def test_workdir_on_a_descriptor_stays_in_the_vm_container(vm_hostrt: Hostrt) -> None:
    """In the guest the runtime holds descriptors too: `-w /proc/self/fd/N` must not reach the
    guest's root (runc's CVE-2024-21626), for `run` and for `exec`."""
    escape = "cd ../../../../../../../..; ls -d hostrt* run/hostrt* 2>/dev/null; echo end"
    vm_hostrt.ok("run", "--backend", "lightvm", "--rm", "busybox", "true", timeout=900)  # warm: the guest daemon's path
    for n in range(3, 12):
        done = vm_hostrt("run", "--backend", "lightvm", "--rm", "-w", f"/proc/self/fd/{n}", "busybox", "sh", "-c", escape,
                         timeout=900)
        assert done.returncode in (125, 127) and "end" not in done.stdout, f"-w /proc/self/fd/{n}: {done.stdout}"
    cid = vm_hostrt.ok("run", "--backend", "lightvm", "-d", "busybox", "sleep", "120").strip()
    try:
        for n in range(3, 12):
            done = vm_hostrt("exec", "-w", f"/proc/self/fd/{n}", cid, "sh", "-c", escape)
            assert done.returncode != 0 and "end" not in done.stdout, f"exec -w /proc/self/fd/{n}: {done.stdout}"
        assert vm_hostrt.ok("exec", "-w", "/tmp", cid, "pwd") == "/tmp\n"
    finally:
        vm_hostrt("rm", "-f", cid)


def test_device_rules_hold_in_a_cgroup_v2_guest(vm_hostrt: Hostrt) -> None:
    """The guest boots cgroup v2, which has no devices controller: the runtime's device
    program must refuse a node made for the kernel log (c 1:11), and leave /dev/null usable."""
    script = ("cat /proc/self/cgroup; mknod /dev/k c 1 11 && (echo x > /dev/k); echo kmsg=$?; "
              "echo y > /dev/null; echo null=$?")
    done = vm_hostrt("run", "--backend", "lightvm", "--rm", "busybox", "sh", "-c", script, timeout=900)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "0::/", f"not a cgroup v2 guest: {done.stdout}"
    assert "kmsg=0" not in lines and "Operation not permitted" in done.stderr, done.stdout + done.stderr
    assert "null=0" in lines, done.stdout + done.stderr
