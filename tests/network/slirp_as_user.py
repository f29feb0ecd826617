"""Run by test_slirp_rootless.py as an unprivileged user inside `unshare --user --map-root-user --mount`
(what hostrt's rootless commands run in): the default network of a container there is slirp4netns,
and its published port answers in the caller's network namespace. Prints what it saw as JSON.

Usage: python slirp_as_user.py WORK_DIR HOST_PORT
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from hostrt import rootless
from hostrt.network import attach, slirp
from hostrt.network.proxy import ThreadedProxy


def main() -> None:
    work, port = Path(sys.argv[1]), int(sys.argv[2])
    container_id = "5" * 64
    container_dir = work / "containers" / container_id
    container_dir.mkdir(parents=True)
    (work / "www").mkdir()
    (work / "www" / "index.html").write_text("rootless-slirp\n")
    seen: dict = {"in_user_namespace": rootless.in_user_namespace()}
    own_netns = os.readlink("/proc/self/ns/net")
    publish = [{"host_ip": "127.0.0.1", "host_port": port, "container_port": 80, "protocol": "tcp"}]
    netns = attach.setup(container_dir, container_id, "rootless", "bridge", publish, work, work / "run")
    seen["mode"] = attach.read(container_dir).mode
    seen["slirp_uid"] = _uid_of(json.loads((container_dir / slirp.HANDLE_FILE).read_text())["pid"])
    server = subprocess.Popen(["nsenter", f"--net={netns}", shutil.which("busybox"), "httpd", "-f", "-p", "80",
                               "-h", str(work / "www")])
    ports = ThreadedProxy(container_dir)
    try:
        seen["tap0"] = subprocess.run(["nsenter", f"--net={netns}", "ip", "-o", "-4", "addr", "show", "tap0"],
                                      capture_output=True, text=True).stdout
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                    seen["reply"] = reply.read().decode()
                break
            except OSError as err:
                if time.monotonic() > deadline:
                    seen["reply"] = f"error: {err}"
                    break
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:  # no retry now
            seen["second_reply"] = reply.read().decode()
        # The proxy's thread makes sockets in the container's namespace: it must not stay there
        # (a user namespace cannot setns back to the host's), or its next listener binds in the wrong place.
        seen["threads_elsewhere"] = sorted({os.readlink(f"/proc/self/task/{task}/ns/net")
                                            for task in os.listdir("/proc/self/task")} - {own_netns})
    finally:
        ports.close()
        server.kill()
        server.wait()
        attach.teardown(container_dir, container_id)
    seen["left"] = sorted(p.name for p in (work / "run").rglob("*") if not p.is_dir())
    print(json.dumps(seen))


def _uid_of(pid: int) -> int:
    """The process's real uid as this user namespace sees it (0 maps to the unprivileged user)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return -1


if __name__ == "__main__":
    main()
