"""SSH to a machine with paramiko: the machine's own client key, the guest's pinned host key.

No password is ever tried, no agent or ~/.ssh key is looked at, and a host key other than the
one generated at `machine init` is refused (RejectPolicy): a different key means the port is
not our guest.
"""

from __future__ import annotations

import base64
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paramiko

LOOPBACK = "127.0.0.1"
# paramiko logs every failed attempt of the readiness poll (and its traceback) to stderr
# through logging's last-resort handler; the outcome is reported by us instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach one machine's guest."""

    port: int
    client_key: Path
    host_key_line: str  # "ssh-ed25519 AAAA..." pinned at machine init


class GuestNotReadyError(Exception):
    """The guest did not accept an SSH session in time."""


def _pinned_key(line: str) -> paramiko.PKey:
    kind, blob = line.split()[:2]
    if kind != "ssh-ed25519":
        raise ValueError(f"pinned host key of unexpected type {kind}")
    return paramiko.Ed25519Key(data=base64.b64decode(blob))


def connect(target: SshTarget, timeout: float = 10.0) -> paramiko.SSHClient:
    """An authenticated session as root, after verifying the guest's host key against the pinned one."""
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[{LOOPBACK}]:{target.port}", "ssh-ed25519", _pinned_key(target.host_key_line))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        LOOPBACK,
        port=target.port,
        username="root",
        pkey=paramiko.Ed25519Key.from_private_key_file(str(target.client_key)),
        look_for_keys=False,
        allow_agent=False,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
    )
    return client


def run(client: paramiko.SSHClient, command: str, stdin: bytes | None = None, timeout: float | None = None) -> tuple[int, bytes, bytes]:
    """Run `command` in the guest; (exit status, stdout, stderr)."""
    chan_in, chan_out, chan_err = client.exec_command(command, timeout=timeout)
    if stdin is not None:
        chan_in.write(stdin)
    chan_in.channel.shutdown_write()
    out = chan_out.read()
    err = chan_err.read()
    return chan_out.channel.recv_exit_status(), out, err


READY_LINE = b"hostrt-guest: ready"  # what the guest's /init prints on the console once dropbear listens


def _wait_console(console: Path, deadline: float, alive: Callable[[], bool]) -> None:
    """Until a fresh boot's console shows the ready line. QEMU's user network accepts a TCP
    connection before the guest listens, so polling SSH costs a failed handshake and a pause per
    try; the console says when to connect. Returns early (SSH polling decides) if it is unreadable."""
    while time.monotonic() < deadline and alive():
        try:
            if READY_LINE in console.read_bytes():
                return
        except OSError:
            return
        time.sleep(0.05)


def wait_ready(target: SshTarget, deadline: float, alive: Callable[[], bool],
               console: Path | None = None) -> paramiko.SSHClient:
    """Poll until the guest accepts a session; stop early if the domain died (`alive` false).
    `console`: the serial log of a fresh boot, watched for the guest's ready line first."""
    if console is not None:
        _wait_console(console, deadline, alive)
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise GuestNotReadyError("the guest stopped before SSH was ready")
        try:
            with socket.create_connection((LOOPBACK, target.port), timeout=1.0):
                pass
            return connect(target, timeout=max(1.0, min(10.0, deadline - time.monotonic())))
        except paramiko.BadHostKeyException:
            raise
        except (OSError, paramiko.SSHException, EOFError) as err:
            last_error = err
            time.sleep(0.25)
    raise GuestNotReadyError(f"SSH not ready in time (last error: {last_error})")
