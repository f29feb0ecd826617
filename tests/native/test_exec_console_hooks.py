"""exec into a running container, the console socket protocol, hooks, namespaces joined
by path, and process settings (user, env, cwd, rlimits)."""

from __future__ import annotations

import json
import os
import socket
import time


def test_exec_runs_in_the_container(rt, bundle, tmp_path):
    b = bundle("sleep", "100")
    rt("run", "-d", "-b", str(b), "c1")
    proc = rt("exec", "c1", "sh", "-c", "echo $$ $FOO; hostname; cat /proc/1/cmdline; exit 7", check=False)
    assert proc.returncode == 7
    lines = proc.stdout.splitlines()
    assert lines[1] == "hostrt-test"
    assert lines[2].startswith("sleep")
    proc = rt("exec", "--env", "FOO=bar", "--cwd", "/tmp", "--user", "65534:65534", "c1", "sh", "-c", "echo $FOO $(pwd) $(id -u):$(id -g)")
    assert proc.stdout.split() == ["bar", "/tmp", "65534:65534"]
    pid_file = tmp_path / "exec.pid"
    rt("exec", "--detach", "--pid-file", str(pid_file), "c1", "sleep", "50")
    pid = int(pid_file.read_text())
    assert open(f"/proc/{pid}/cmdline").read().startswith("sleep")
    assert pid in json.loads(rt("ps", "--format", "json", "c1").stdout)
    assert "sleep 50" in rt("ps", "c1").stdout
    assert rt("exec", "c1", "/no/such/binary", check=False).returncode == 1
    rt("delete", "--force", "c1")
    assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split(") ")[1][:1]


def test_exec_refused_in_stopped_container(rt, bundle):
    b = bundle("true")
    rt("run", "-d", "-b", str(b), "c1")
    for _ in range(100):
        if rt.state("c1")["status"] == "stopped":
            break
        time.sleep(0.02)
    assert rt("exec", "c1", "true", check=False).returncode == 1
    rt("delete", "c1")


def _console_server(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(20)
    return server


def _read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    import select

    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data


def test_console_socket_receives_pty_master(rt, bundle, tmp_path):
    def edit(config):
        config["process"]["terminal"] = True
        config["process"]["consoleSize"] = {"height": 33, "width": 101}

    b = bundle("sh", "-c", "tty; stty size; echo done; sleep 100", edit=edit)
    sock_path = str(tmp_path / "console.sock")
    server = _console_server(sock_path)
    rt("create", "-b", str(b), "--console-socket", sock_path, "c1")
    conn, _ = server.accept()
    msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
    assert len(fds) == 1 and msg.startswith(b"/dev/pts/")
    master = fds[0]
    rt("start", "c1")
    out = _read_until(master, b"done")
    assert b"/dev/pts/0" in out and b"33 101" in out
    os.close(master)
    conn.close()
    server.close()
    rt("delete", "--force", "c1")


def test_exec_tty_through_console_socket(rt, bundle, tmp_path):
    b = bundle("sleep", "100")
    rt("run", "-d", "-b", str(b), "c1")
    sock_path = str(tmp_path / "exec.sock")
    server = _console_server(sock_path)
    rt("exec", "-d", "-t", "--console-socket", sock_path, "c1", "sh", "-c", "tty; echo exec-done; sleep 5")
    conn, _ = server.accept()
    _msg, fds, _f, _a = socket.recv_fds(conn, 1024, 1)
    out = _read_until(fds[0], b"exec-done")
    assert b"/dev/pts/" in out and b"exec-done" in out
    os.close(fds[0])
    server.close()
    rt("delete", "--force", "c1")


def test_hooks_get_state_in_order(rt, bundle, tmp_path):
    log = tmp_path / "hooks.log"

    def hook(name: str) -> dict:
        # the hook binary is the host's busybox; it appends its kind and the state it read
        return {"path": "/bin/busybox", "args": ["sh", "-c", f"echo {name} $(cat) >> {log}"]}

    def edit(config):
        config["hooks"] = {k: [hook(k)] for k in ("prestart", "createRuntime", "poststart", "poststop")}

    b = bundle("true", edit=edit, readonly=False)
    config = json.loads((b / "config.json").read_text())
    # createContainer runs in the container's namespaces before pivot_root (host paths
    # resolve); startContainer after it (container paths resolve).
    config["hooks"]["createContainer"] = [{"path": "/bin/busybox", "args": ["sh", "-c", f"readlink /proc/self/ns/mnt > {tmp_path}/cc"]}]
    config["hooks"]["startContainer"] = [{"path": "/bin/sh", "args": ["sh", "-c", "hostname > /tmp/sc"]}]
    (b / "config.json").write_text(json.dumps(config))
    rt("run", "-b", str(b), "c1")
    assert (tmp_path / "cc").read_text().strip() != os.readlink("/proc/self/ns/mnt")
    assert (b / "rootfs" / "tmp" / "sc").read_text().strip() == "hostrt-test"
    lines = log.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["prestart", "createRuntime", "poststart", "poststop"]
    states = [json.loads(line.split(" ", 1)[1]) for line in lines]
    assert all(s["id"] == "c1" and s["bundle"] == str(b) for s in states)
    assert states[0]["pid"] > 0 and states[-1]["status"] == "stopped"


def test_failing_and_slow_hooks_fail_create(rt, bundle):
    b = bundle("true", edit=lambda c: c.__setitem__("hooks", {"prestart": [{"path": "/bin/false"}]}))
    assert rt("run", "-b", str(b), "c1", check=False).returncode == 1
    assert "prestart hook /bin/false failed" in rt.log.read_text()
    slow = {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]}
    b2 = bundle("true", edit=lambda c: c.__setitem__("hooks", slow))
    started = time.monotonic()
    assert rt("run", "-b", str(b2), "c2", check=False).returncode == 1
    assert time.monotonic() - started < 8
    assert "timed out" in rt.log.read_text()
    assert rt.ids() == []


def test_join_network_namespace_by_path(rt, bundle):
    b1 = bundle("sleep", "100")
    rt("run", "-d", "-b", str(b1), "c1")
    pid = rt.state("c1")["pid"]
    netns = f"/proc/{pid}/ns/net"

    def edit(config):
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = netns

    b2 = bundle("readlink", "/proc/self/ns/net", edit=edit)
    out = rt("run", "-b", str(b2), "c2").stdout.strip()
    assert out == os.readlink(netns)
    assert out != os.readlink("/proc/self/ns/net")
    rt("delete", "--force", "c1")


def test_process_user_rlimits_umask_cwd(rt, bundle):
    def edit(config):
        config["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 0o077}
        config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}]
        config["process"]["cwd"] = "/tmp"
        config["process"]["env"].append("GREETING=hi")

    b = bundle("sh", "-c", "id -u; id -g; id -G; ulimit -n; umask; pwd; echo $GREETING", edit=edit)
    out = rt("run", "-b", str(b), "c1").stdout.split()
    assert out[0] == "1000" and out[1] == "1000"
    assert "10" in out[2:5] and "20" in out[2:5]
    assert "512" in out and "0077" in out and "/tmp" in out and out[-1] == "hi"


def test_no_pivot(rt, bundle):
    b = bundle("sh", "-c", "ls /bin/busybox && echo ok")
    assert "ok" in rt("run", "--no-pivot", "-b", str(b), "c1").stdout


def test_sysctl_and_hostname(rt, bundle):
    def edit(config):
        config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.domainname": "example.test"}
        config["linux"]["readonlyPaths"] = [p for p in config["linux"]["readonlyPaths"] if p != "/proc/sys"]

    b = bundle("sh", "-c", "cat /proc/sys/net/ipv4/ip_forward; hostname", edit=edit)
    out = rt("run", "-b", str(b), "c1").stdout.split()
    assert out == ["1", "hostrt-test"]


def test_foreground_run_relays_its_own_terminal(rt, bundle):
    b = bundle("sh", "-c", "tty; echo relayed; exit 5", edit=lambda c: c["process"].__setitem__("terminal", True))
    proc = rt("run", "-b", str(b), "c1", check=False, stdin=__import__("subprocess").DEVNULL)
    assert proc.returncode == 5
    assert proc.stdout.replace("\r\n", "\n").split() == ["/dev/pts/0", "relayed"]
