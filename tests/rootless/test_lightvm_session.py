"""The VM backend for an ordinary user, with either driver: QEMU through libvirt's session
daemon (qemu:///session), or QEMU started by hostrt itself; either way as the user. `--backend lightvm` commands stay outside the
rootless namespace (libvirt must see the user's own uid); commands inside it (ps, logs, rm)
reach the same daemon by its socket."""

from __future__ import annotations

import json
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


def test_lightvm_with_qemu_started_by_hostrt_as_the_user(rootless: AsUser) -> None:
    """The QEMU driver needs no libvirt at all: an ordinary user's machine is a QEMU hostrt
    starts as that user, saved and restored, and gone with `machine rm`."""
    qemu = {"HOSTRT_MACHINE_DRIVER": "qemu"}
    rootless("hostrt", "machine", "rm", "default", timeout=300)  # the session daemon's machine, if an earlier test made one
    done = rootless("hostrt", "run", "--rm", "--backend", "lightvm", "busybox", "uname", "-m", env=qemu, timeout=1200)
    assert (done.returncode, done.stdout) == (0, "x86_64\n"), done.stderr
    try:
        facts = json.loads(rootless.ok("machine", "inspect", "default"))
        assert facts["driver"] == "qemu"
        pid = int(facts["hypervisor"]["pid"])
        assert Path(f"/proc/{pid}").stat().st_uid == rootless.user.uid, "QEMU runs as the user who asked for it"
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert b"libvirt" not in Path(f"/proc/{parent}/cmdline").read_bytes()
        assert "(state saved)" in rootless.ok("machine", "stop", "default", timeout=300)
        rootless.ok("machine", "start", "default", timeout=600)
        assert json.loads(rootless.ok("machine", "inspect", "default"))["running"]["resumed"] is True
    finally:
        rootless.ok("machine", "rm", "default", timeout=300)
    assert not _qemu_owned_by(rootless.user.uid)
