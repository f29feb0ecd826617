"""The guest VM image through a registry: built and pushed on one host, pulled and booted on
another hostrt root that never builds it (what a macOS or Windows user does)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tests.engine.conftest import REPO, Hostrt
from tests.images.registry_server import start_registry
from tests.lightvm.conftest import MACHINE_TESTS

pytestmark = MACHINE_TESTS


def test_guest_image_round_trip_through_a_registry(tmp_path: Path, guest_cache: Path, guest_image) -> None:  # type: ignore[no-untyped-def]
    guest_image("amd64")  # built once per session
    runtime = str(Path(sys.executable).with_name("hostrt-runtime"))
    builder = Hostrt(tmp_path / "builder", runtime)
    (builder.root / "cache").mkdir(parents=True)
    (builder.root / "cache" / "guest").symlink_to(guest_cache)
    registry = start_registry(tmp_path / "registry")
    try:
        assert builder.ok("machine", "image", "build", "--arch", "amd64", "--tag", "guest:test").strip() == "guest:test"
        builder.ok("push", "guest:test", f"{registry.host}/hostrt/guest:test")

        user = Hostrt(tmp_path / "user", runtime)  # a host that cannot build: no apt-get, no dpkg-deb
        user.ok("image", "build", str(REPO / "images" / "busybox"), timeout=600)  # before its PATH loses them
        tools = tmp_path / "bin"
        tools.mkdir()
        (tools / "qemu-system-x86_64").symlink_to(shutil.which("qemu-system-x86_64"))
        user.env["PATH"] = str(tools)
        user.env["HOSTRT_GUEST_REGISTRY"] = registry.host  # the pinned release is not there: refused
        refused = user("machine", "init", "nobuild")
        assert refused.returncode == 125 and refused.stderr.count("\n") == 1, refused.stderr
        assert "HOSTRT_GUEST_IMAGE" in refused.stderr and "apt-get" in refused.stderr
        assert not (user.root / "machines" / "nobuild").exists()

        reference = f"{registry.host}/hostrt/guest:test"
        user.ok("machine", "init", "pulled", "--image", reference, timeout=300)
        boot = json.loads(user.ok("machine", "inspect", "pulled"))["boot"]
        assert Path(boot["kernel"]).is_relative_to(user.root)
        user.ok("machine", "rm", "pulled", timeout=120)

        # The machine hostrt creates on first use pulls the guest named by HOSTRT_GUEST_IMAGE.
        user.env["HOSTRT_GUEST_IMAGE"] = reference
        try:
            done = user.ok("run", "--backend", "lightvm", "--rm", "busybox", "uname", "-m", timeout=900)
            assert done.strip() == "x86_64"
            assert not (user.root / "cache" / "guest" / "debs").exists(), "nothing was built"
        finally:
            user("machine", "rm", "default", timeout=120)
    finally:
        registry.stop()
