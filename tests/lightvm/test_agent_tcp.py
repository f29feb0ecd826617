"""Containers in a real machine whose host agent listens on loopback TCP with a token, the
transport of hosts without unix sockets (Windows), forced here with HOSTRT_AGENT_TRANSPORT=tcp.
The machine runs under the QEMU driver, the one such hosts use. A few of the machine tests run
again through it, then the agent's own promises: loopback only, a private token file, a wrong
token runs nothing, nothing left when the machine stops."""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.lightvm.agent_transport import ENDPOINT_NAME, SOCKET_NAME, TRANSPORT_ENV
from backends.lightvm.hostagent import AgentSession
from tests.engine.conftest import Hostrt
from tests.lightvm import test_vm_containers as machine_tests
from tests.lightvm.conftest import MACHINE_TESTS, machine_root
from tests.support.sockets import listeners

pytestmark = MACHINE_TESTS


@pytest.fixture(scope="module")
def vm_hostrt(tmp_path_factory: pytest.TempPathFactory, guest_cache: Path, guest_image) -> Iterator[Hostrt]:  # type: ignore[no-untyped-def]
    guest_image("amd64")  # skips where the guest cannot be built
    root = machine_root(tmp_path_factory, guest_cache, "agent-tcp", "qemu")
    hostrt = next(root)
    hostrt.env[TRANSPORT_ENV] = "tcp"
    yield hostrt
    next(root, None)


# The machine tests that go through the agent (commands, guest operations, streamed stdin, exec).
test_run_in_vm_reports_the_guest_kernel = machine_tests.test_run_in_vm_reports_the_guest_kernel
test_exit_codes_streams_and_stdin = machine_tests.test_exit_codes_streams_and_stdin
test_warm_run_goes_through_the_host_agent_without_ssh = machine_tests.test_warm_run_goes_through_the_host_agent_without_ssh
test_exec_and_pause_in_a_vm_container = machine_tests.test_exec_and_pause_in_a_vm_container


def _machine(hostrt: Hostrt) -> Path:
    return hostrt.root / "machines" / "default"


def test_the_agent_listens_on_loopback_tcp_with_a_private_token(vm_hostrt: Hostrt) -> None:
    vm_hostrt.ok("run", "--backend", "lightvm", "--rm", "busybox", "true", timeout=900)  # the machine and agent are up
    machine = _machine(vm_hostrt)
    endpoint = machine / ENDPOINT_NAME
    assert not (machine / SOCKET_NAME).exists()
    assert stat.S_IMODE(endpoint.stat().st_mode) == 0o600
    port = int(endpoint.read_text().split()[0])
    assert listeners(port) == ["127.0.0.1"], "the agent listens on loopback only"


def _send_raw(port: int, first: bytes) -> bytes:
    """What the agent answers a connection that starts with `first` and asks for a command."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(first + json.dumps({"command": "touch /root/ran-without-token"}).encode() + b"\n")
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def test_a_wrong_or_missing_token_runs_nothing(vm_hostrt: Hostrt) -> None:
    vm_hostrt.ok("run", "--backend", "lightvm", "--rm", "busybox", "true", timeout=900)
    machine = _machine(vm_hostrt)
    port, token = (machine / ENDPOINT_NAME).read_text().split()
    wrong = ("0" if token[0] != "0" else "1") + token[1:]
    assert _send_raw(int(port), wrong.encode() + b"\n") == b""
    assert _send_raw(int(port), token.encode() + b"\n") == b"", "the token itself is never what is sent"
    assert _send_raw(int(port), b"") == b""  # the request alone, no token
    assert vm_hostrt("machine", "ssh", "default", "--", "test", "-e", "/root/ran-without-token").returncode == 1
    # The same request with the token runs: the check above could have failed.
    code, out, _err = AgentSession(machine).run("touch /root/ran-with-token && echo ran")
    assert (code, out) == (0, b"ran\n")
    assert vm_hostrt("machine", "ssh", "default", "--", "test", "-e", "/root/ran-with-token").returncode == 0


def test_the_token_goes_when_the_machine_stops(vm_hostrt: Hostrt) -> None:
    vm_hostrt.ok("run", "--backend", "lightvm", "--rm", "busybox", "true", timeout=900)
    machine = _machine(vm_hostrt)
    port = int((machine / ENDPOINT_NAME).read_text().split()[0])
    vm_hostrt.ok("machine", "stop", "default", timeout=300)
    assert not (machine / ENDPOINT_NAME).exists() and not (machine / SOCKET_NAME).exists()
    deadline = time.monotonic() + 30  # the agent was sent SIGTERM: its port closes as it exits
    while listeners(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert listeners(port) == []
    assert not [p.name for p in machine.iterdir() if p.name.startswith(".agent")], "no temporary endpoint file"
