"""The proxy reaching a server that has only its own loopback, by making its upstream sockets
inside the server's network namespace (how the VM path reaches its containers in the guest),
and the runtime giving every new network namespace a working loopback."""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from hostrt.network.enter import socket_in
from hostrt.network.ports import PortSpec
from hostrt.network.proxy import PortProxy
from tests.engine.conftest import Hostrt
from tests.network.test_monitor_takeover import get
from tests.network.test_proxy import selector_loop

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="entering a namespace needs root")]


@pytest.fixture
def isolated_httpd(tmp_path: Path) -> Iterator[Path]:
    """busybox httpd in a new network namespace (loopback only); yields the file holding its pid."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("inside\n")
    server = subprocess.Popen(["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {busybox} httpd -f "
                               f"-p 127.0.0.1:80 -h {tmp_path / 'www'}"])
    pid_file = tmp_path / "init.pid"
    pid_file.write_text(str(server.pid))
    yield pid_file
    server.kill()
    server.wait()


def test_proxy_reaches_a_server_inside_its_namespace(isolated_httpd: Path) -> None:
    selector = selectors.DefaultSelector()
    proxy = PortProxy(selector, "127.0.0.1", [PortSpec("127.0.0.1", 0, 80)], partial(socket_in, isolated_httpd))
    port = proxy.open()[0].host_port
    try:
        with selector_loop(selector) as thread:
            assert get(port) == "inside\n"
            assert os.readlink(f"/proc/{os.getpid()}/task/{thread.native_id}/ns/net") == os.readlink("/proc/self/ns/net"), \
                "the proxy's thread is back in its own namespace"
            os.kill(int(isolated_httpd.read_text()), 9)
            time.sleep(0.2)
            with pytest.raises(OSError):  # the namespace is gone: the client is refused, the proxy goes on
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
    finally:
        proxy.close()


def test_a_container_without_a_network_has_a_working_loopback(engine_root: Path) -> None:
    from tests.engine.conftest import _runtime

    hostrt = Hostrt(engine_root, _runtime())
    done = hostrt("run", "--rm", "--network", "none", "busybox", "sh", "-c",
                  "httpd -p 127.0.0.1:80 -h /etc && wget -qO- http://127.0.0.1/hostname")
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
