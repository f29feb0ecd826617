"""Docker's daemon and Podman as the peers hostrt shares a host with, started by the tests.

Each peer gets its own state under a temporary directory (dockerd: --data-root,
--exec-root, --pidfile and its own socket; podman: --root and --runroot) and a busybox
image imported from a tar of Debian's busybox-static (no registry needed). What a peer
adds to the host beyond that (its bridge, its iptables chains and rules) is removed when
the test ends, found by a snapshot taken before it started: nothing that was there before
is touched, so a host's own Docker or Podman is never disturbed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

APPLETS = ("sh", "httpd", "nc", "mkdir", "echo", "sleep", "cat", "ip", "hostname", "true", "printf")
IMAGE = "hostrt-peer-busybox:1"
HTTPD = "mkdir -p /www && echo served-by-{who} > /www/index.html && exec httpd -f -p 80 -h /www"
# busybox-static's wget crashes in glibc's resolver code without NSS modules; nc takes an address as is
CNI_LEASES = Path("/var/lib/cni/networks/podman")  # host-local IPAM's state of Podman's default network
GET = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {address} 80"


def busybox_tar(directory: Path) -> Path:
    """A rootfs tar: /bin/busybox and links for the applets the tests use."""
    path = directory / "busybox.tar"
    with tarfile.open(path, "w") as tar:
        tar.add("/bin/busybox", "bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return path


def iptables_rules() -> dict[str, list[str]]:
    return {table: subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True,
                                  text=True).stdout.splitlines() for table in ("filter", "nat")}


def undo_rules(before: dict[str, list[str]], markers: tuple[str, ...]) -> None:
    """Delete rules and chains that appeared since `before` and name one of `markers`."""
    after = iptables_rules()
    for table, rules in after.items():
        added = [r for r in rules if r not in before[table] and any(m in r for m in markers)]
        for rule in reversed([r for r in added if r.startswith("-A ")]):
            subprocess.run(["iptables", "-w", "-t", table, "-D", *_words(rule)[1:]], capture_output=True)
        for chain in [r.split()[1] for r in added if r.startswith("-N ")]:
            subprocess.run(["iptables", "-w", "-t", table, "-F", chain], capture_output=True)
            subprocess.run(["iptables", "-w", "-t", table, "-X", chain], capture_output=True)


def _words(rule: str) -> list[str]:
    import shlex

    return shlex.split(rule)


class Dockerd:
    """A dockerd of the test's own; `docker(...)` is the CLI talking to it."""

    MARKERS = ("DOCKER", "docker0")

    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "docker.sock"
        self.rules = iptables_rules()
        self.log = open(base / "dockerd.log", "w")
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"), "--pidfile",
             str(base / "dockerd.pid"), "-H", f"unix://{self.socket}", "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.cli = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker") or "docker"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.docker("version").returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {(self.base / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.3)

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.cli, "-H", f"unix://{self.socket}", *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def ok(self, *args: str, timeout: float = 120) -> str:
        done = self.docker(*args, timeout=timeout)
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
        return done.stdout

    def address(self, container: str) -> str:
        return json.loads(self.ok("inspect", container))[0]["NetworkSettings"]["IPAddress"]

    def stop(self) -> None:
        """Containers, daemon, then docker0 and its iptables chains; each step runs whatever failed before."""
        try:
            if self.process.poll() is None:
                ids = self.docker("ps", "-aq", timeout=30).stdout.split() if self.socket.exists() else []
                if ids:
                    self.docker("rm", "-f", *ids, timeout=60)
                for name in self.docker("network", "ls", "-q", "--filter", "type=custom", timeout=30).stdout.split():
                    self.docker("network", "rm", name, timeout=30)
        except (subprocess.TimeoutExpired, OSError):
            pass
        finally:
            _end(self.process)
            self.log.close()
            subprocess.run(["ip", "link", "del", "docker0"], capture_output=True)
            undo_rules(self.rules, self.MARKERS + ("br-",))
            subprocess.run(["umount", "-R", "-l", str(self.base / "exec")], capture_output=True)


class Podman:
    """`podman` with its own storage; its default network (cni-podman0) comes up with its first container."""

    MARKERS = ("CNI-", "cni-podman0", "10.88.")

    def __init__(self, base: Path) -> None:
        self.base = base
        self.rules = iptables_rules()
        self.had_bridge = Path("/sys/class/net/cni-podman0").exists()
        self.had_leases = CNI_LEASES.exists()
        # runc: crun refuses this host's hybrid cgroups; vfs: nothing left mounted under the test's directory
        self.argv = ["podman", "--root", str(base / "root"), "--runroot", str(base / "run"), "--cgroup-manager",
                     "cgroupfs", "--events-backend", "file", "--storage-driver", "vfs", "--runtime", "runc"]

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        if args and args[0] == "run":  # podman's default nofile limit is above this host's hard limit
            args = ("run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", *args[1:])
        return subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def ok(self, *args: str, timeout: float = 120) -> str:
        done = self.podman(*args, timeout=timeout)
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr}"
        return done.stdout

    def address(self, container: str) -> str:
        return json.loads(self.ok("inspect", container))[0]["NetworkSettings"]["IPAddress"]

    def stop(self) -> None:
        try:
            self.podman("rm", "-af", "-t", "0", timeout=120)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if not self.had_bridge:
                subprocess.run(["ip", "link", "del", "cni-podman0"], capture_output=True)
            if not self.had_leases:
                shutil.rmtree(CNI_LEASES, ignore_errors=True)
            undo_rules(self.rules, self.MARKERS)


def _end(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)  # its own session: dockerd and the containerd it started
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
