"""The VM backend for an ordinary user: QEMU through libvirt's session daemon
(qemu:///session), started as the user. `--backend lightvm` commands stay outside the
rootless namespace (libvirt must see the user's own uid); commands inside it (ps, logs, rm)
reach the same daemon by its socket."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.rootless.conftest import AsUser

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _qemu_owned_by(uid: int) -> bool:
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and proc.stat().st_uid == uid and b"qemu-system" in (proc / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def test_lightvm_through_the_users_session_daemon(rootless: AsUser) -> None:
    out = rootless.ok("run", "--rm", "--backend", "lightvm", "busybox", "sh", "-c", "id -u; uname -r", timeout=1200)
    assert out.splitlines()[0] == "0"
    assert _qemu_owned_by(rootless.user.uid), "the machine's QEMU should run as the user"
    name = f"rl-vm-{uuid.uuid4().hex[:8]}"
    rootless.ok("run", "-d", "--name", name, "--backend", "lightvm", "busybox", "sh", "-c", "echo up; sleep 120",
                timeout=600)
    try:
        listed = rootless.ok("ps")  # from inside the rootless namespace
        assert name in listed and "lightvm" in listed
    finally:
        rootless.ok("rm", "-f", name, timeout=300)
