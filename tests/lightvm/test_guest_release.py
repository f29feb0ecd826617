"""The released guest image, as a host without Debian's tools gets it: pinned by digest, pulled
from a registry (here a local docker-registry standing in for ghcr.io, which this machine cannot
reach), verified, and refused when the registry holds anything else."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backends.lightvm import guest_release
from tests.engine.conftest import Hostrt
from tests.images.registry_server import REGISTRY_BIN, RunningRegistry, start_registry
from tests.lightvm.conftest import MACHINE_TESTS

pytestmark = MACHINE_TESTS

RUNTIME = str(Path(sys.executable).with_name("hostrt-runtime"))


@dataclass
class Release:
    builder: Hostrt
    registry: RunningRegistry
    digest: str  # of the two-architecture index pushed as hostrt/guest:release


def _pushed_digest(output: str) -> str:
    found = re.search(r"digest (sha256:[0-9a-f]{64})", output)
    assert found, output
    return found.group(1)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, guest_cache: Path, guest_image) -> Iterator[Release]:  # type: ignore[no-untyped-def]
    """What the release workflow does: both guests built, stored as one index, pushed."""
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry (Debian package docker-registry) is not installed")
    guest_image("amd64"), guest_image("arm64")  # built once per session (skips without apt for arm64)
    work = tmp_path_factory.mktemp("guest-release")
    builder = Hostrt(work / "builder", RUNTIME)
    (builder.root / "cache").mkdir(parents=True)
    (builder.root / "cache" / "guest").symlink_to(guest_cache)
    registry = start_registry(work / "registry")
    try:
        builder.ok("machine", "image", "build", "--tag", "hostrt/guest:release", timeout=900)
        digest = _pushed_digest(builder.ok("push", "hostrt/guest:release", f"{registry.host}/hostrt/guest:release",
                                           timeout=600))
        yield Release(builder, registry, digest)
    finally:
        registry.stop()


def _user(tmp_path: Path) -> Hostrt:
    """A hostrt root on a host that cannot build a guest: no apt-get, no dpkg-deb on PATH."""
    user = Hostrt(tmp_path / "user", RUNTIME)
    tools = tmp_path / "bin"
    tools.mkdir()
    for qemu in ("qemu-system-x86_64", "qemu-system-aarch64"):
        if shutil.which(qemu):
            (tools / qemu).symlink_to(shutil.which(qemu))
    user.env["PATH"] = str(tools)
    user.env.pop("HOSTRT_GUEST_IMAGE", None)
    user.env.pop(guest_release.REGISTRY_ENV, None)
    return user


def _names(user: Hostrt) -> list[str]:
    return [image["name"] for image in json.loads(user.ok("images", "--format", "json"))]


def _nothing_left(user: Hostrt, machine: str) -> None:
    """A refused guest leaves no machine, no image name, no blob, no derived kernel."""
    assert not (user.root / "machines" / machine).exists()
    assert _names(user) == []
    blobs = user.root / "store" / "blobs" / "sha256"
    assert not blobs.exists() or list(blobs.iterdir()) == []
    guests = user.root / "cache" / "guest"
    assert not guests.exists() or list(guests.iterdir()) == []


def test_a_host_without_debian_tools_pulls_a_pinned_guest_and_verifies_it(release: Release, tmp_path: Path) -> None:
    user = _user(tmp_path)
    pinned = f"{release.registry.host}/hostrt/guest@{release.digest}"
    user.env["HOSTRT_GUEST_IMAGE"] = pinned
    done = user("machine", "init", "--driver", "qemu", "pinned", timeout=600)  # as on macOS and Windows
    assert done.returncode == 0, done.stderr
    assert f"pulled guest image {pinned} (amd64" in done.stderr and "index digest verified" in done.stderr
    facts = json.loads(user.ok("machine", "inspect", "pinned"))
    assert facts["driver"] == "qemu"
    boot = facts["boot"]
    kernel = Path(boot["kernel"])
    assert kernel.is_relative_to(user.root / "cache" / "guest") and kernel.parent.name.startswith("pulled-amd64-")
    assert _names(user) == [pinned]
    assert not (user.root / "cache" / "guest" / "debs").exists(), "nothing was built"
    user.ok("machine", "rm", "pinned", timeout=120)


def test_a_tampered_index_is_refused_and_nothing_is_left(release: Release, tmp_path: Path) -> None:
    user = _user(tmp_path)
    stored = release.registry.blob_file("hostrt/guest", release.digest)
    original = stored.read_bytes()
    # Same size, one platform renamed: what a compromised registry or mirror could serve.
    tampered = original.replace(b'"arm64"', b'"arm65"', 1)
    assert tampered != original and len(tampered) == len(original)
    stored.write_bytes(tampered)
    try:
        user.env["HOSTRT_GUEST_IMAGE"] = f"{release.registry.host}/hostrt/guest@{release.digest}"
        refused = user("machine", "init", "tampered", timeout=300)
    finally:
        stored.write_bytes(original)
    assert refused.returncode == 125 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("hostrt: error: ") and f"expected {release.digest}" in refused.stderr
    _nothing_left(user, "tampered")


def test_a_retagged_guest_on_a_mirror_is_refused_for_the_pinned_default(release: Release, tmp_path: Path) -> None:
    """The mirror's hostrt/guest tags name another guest (here: the amd64 one alone); the default
    asks for the pinned digest only, so a moved tag never boots."""
    mirror = start_registry(tmp_path / "mirror")
    try:
        release.builder.ok("machine", "image", "build", "--arch", "amd64", "--tag", "hostrt/guest:amd64-only", timeout=900)
        other = _pushed_digest(release.builder.ok("push", "hostrt/guest:amd64-only", f"{mirror.host}/hostrt/guest:latest",
                                                  timeout=600))
        assert other != guest_release.DIGEST
        user = _user(tmp_path)
        user.env[guest_release.REGISTRY_ENV] = mirror.host
        refused = user("machine", "init", "retagged", timeout=300)
        assert refused.returncode == 125 and refused.stderr.count("\n") == 1, refused.stderr
        assert f"{mirror.host}/hostrt/guest@{guest_release.DIGEST}" in refused.stderr
        assert "apt-get" in refused.stderr and guest_release.REGISTRY_ENV in refused.stderr
        _nothing_left(user, "retagged")
    finally:
        mirror.stop()


def test_the_pinned_default_comes_from_a_mirror_when_it_holds_the_pinned_guest(release: Release,
                                                                                 tmp_path: Path) -> None:
    """No setting but the mirror: the default guest of guest_release.py, pulled and verified.
    Runs where the guest built from this checkout's recipe is the pinned one (the build is
    reproducible for the same Debian packages)."""
    if release.digest != guest_release.DIGEST:
        pytest.skip(f"the guest built here ({release.digest}) is not the pinned release {guest_release.DIGEST}: "
                    "the recipe or Debian's packages changed since it was pinned")
    user = _user(tmp_path)
    user.env[guest_release.REGISTRY_ENV] = release.registry.host
    done = user("machine", "init", timeout=600)
    assert done.returncode == 0, done.stderr
    pinned = f"{release.registry.host}/hostrt/guest@{guest_release.DIGEST}"
    assert f"pulled guest image {pinned}" in done.stderr and "index digest verified" in done.stderr
    assert _names(user) == [pinned]
    user.ok("machine", "rm", "default", timeout=120)
