"""The guest image: cpio writer, dropbear key format, recipe hash, and a real build + TCG boot."""

from __future__ import annotations

import gzip
import json
import shutil
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends.lightvm import _debs, _elf, _kmods
from backends.lightvm.cpio import CpioWriter, read_entries
from backends.lightvm.guest_image import (
    RECIPE_DIR,
    load_recipe,
    GuestImageError,
    _busybox_applets,
    build_guest_image,
    dropbear_ed25519_host_key,
    machine_overlay,
    recipe_hash,
)

ELF_MACHINE = {"amd64": 62, "arm64": 183}  # EM_X86_64, EM_AARCH64


def _archive(build) -> bytes:  # type: ignore[no-untyped-def]
    import io

    buf = io.BytesIO()
    writer = CpioWriter(buf)
    build(writer)
    writer.close()
    return buf.getvalue()


# --- cpio writer -----------------------------------------------------------------------------


def test_cpio_entries_round_trip_and_stay_aligned() -> None:
    data = _archive(lambda w: (
        w.add_dir("etc", 0o755),
        w.add_file("etc/hostname", b"abc\n", 0o644),
        w.add_file("init", b"#!/bin/sh\n", 0o755),
        w.add_symlink("bin", "usr/bin"),
        w.add_chardev("dev/console", 5, 1),
    ))
    assert data.startswith(b"070701") and len(data) % 4 == 0
    entries = {name: (mode, body) for name, mode, body in read_entries(data)}
    assert entries["etc"][0] == stat.S_IFDIR | 0o755
    assert entries["etc/hostname"] == (stat.S_IFREG | 0o644, b"abc\n")
    assert entries["init"][0] == stat.S_IFREG | 0o755
    assert entries["bin"] == (stat.S_IFLNK | 0o777, b"usr/bin")
    assert stat.S_ISCHR(entries["dev/console"][0])
    assert data.rstrip(b"\0").endswith(b"TRAILER!!!")


def test_cpio_is_readable_by_another_implementation(tmp_path: Path) -> None:
    busybox = shutil.which("busybox")
    if not busybox:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    data = _archive(lambda w: (
        w.add_dir("d", 0o700), w.add_file("d/f", b"x" * 4099, 0o600), w.add_symlink("l", "d/f"),
    ))
    subprocess.run([busybox, "cpio", "-i", "-d"], input=data, cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "d" / "f").read_bytes() == b"x" * 4099
    assert stat.S_IMODE((tmp_path / "d" / "f").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    assert (tmp_path / "l").is_symlink() and (tmp_path / "l").read_bytes() == b"x" * 4099


def test_cpio_writer_stores_a_tree_with_symlinked_dirs(tmp_path: Path) -> None:
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "tool").write_bytes(b"t")
    (tmp_path / "usr" / "bin" / "tool").chmod(0o755)
    (tmp_path / "bin").symlink_to("usr/bin")
    entries = {n: (m, b) for n, m, b in read_entries(_archive(lambda w: w.add_tree(tmp_path)))}
    assert entries["bin"] == (stat.S_IFLNK | 0o777, b"usr/bin")
    assert entries["usr/bin/tool"] == (stat.S_IFREG | 0o755, b"t")
    assert "bin/tool" not in entries  # a symlinked directory is stored as a link, not walked


# --- the machine overlay and the dropbear host key -------------------------------------------


def _ed25519():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def _openssh_public(key) -> str:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_dropbear_host_key_layout() -> None:
    key = _ed25519()
    blob = dropbear_ed25519_host_key(key)
    assert blob[:4] == struct.pack(">I", 11) and blob[4:15] == b"ssh-ed25519"
    assert blob[15:19] == struct.pack(">I", 64) and len(blob) == 19 + 64
    from cryptography.hazmat.primitives import serialization

    assert blob[-32:] == key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_dropbear_reads_the_host_key(tmp_path: Path) -> None:
    dropbearkey = shutil.which("dropbearkey")
    if not dropbearkey:
        pytest.skip("dropbearkey is not installed (apt-get install dropbear-bin)")
    key = _ed25519()
    path = tmp_path / "hostkey"
    path.write_bytes(dropbear_ed25519_host_key(key))
    out = subprocess.run([dropbearkey, "-y", "-f", str(path)], capture_output=True, text=True, check=True).stdout
    assert _openssh_public(key) in out


def test_machine_overlay_carries_the_machine_identity_with_private_modes() -> None:
    host_key = dropbear_ed25519_host_key(_ed25519())
    data = machine_overlay("ssh-ed25519 AAAA user@host", host_key, "m1")
    entries = {n: (m, b) for n, m, b in read_entries(data)}
    assert entries["root/.ssh/authorized_keys"] == (stat.S_IFREG | 0o600, b"ssh-ed25519 AAAA user@host\n")
    assert entries["etc/dropbear/dropbear_ed25519_host_key"] == (stat.S_IFREG | 0o600, host_key)
    assert entries["etc/hostname"][1] == b"m1\n"
    assert entries["root"][0] == stat.S_IFDIR | 0o700 and entries["root/.ssh"][0] == stat.S_IFDIR | 0o700


def test_overlay_appended_to_an_image_overrides_its_files() -> None:
    image = _archive(lambda w: (w.add_dir("etc"), w.add_file("etc/hostname", b"hostrt-guest\n")))
    merged = read_entries(image + machine_overlay("k", b"h", "m2"))
    last = {n: b for n, _m, b in merged}  # the kernel unpacks in order: the last entry wins
    assert last["etc/hostname"] == b"m2\n"


# --- recipe, hash, helpers -------------------------------------------------------------------


def test_recipe_hash_is_per_arch_and_follows_every_recipe_file(tmp_path: Path) -> None:
    recipe = tmp_path / "guest"
    shutil.copytree(RECIPE_DIR, recipe)
    base = recipe_hash("amd64", recipe)
    assert base == recipe_hash("amd64", recipe)
    assert base != recipe_hash("arm64", recipe)
    init = recipe / "rootfs" / "init"
    init.write_bytes(init.read_bytes() + b"\n# changed\n")
    assert recipe_hash("amd64", recipe) != base


def test_unknown_arch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GuestImageError, match="riscv64"):
        build_guest_image("riscv64", tmp_path)


def test_busybox_applet_table_matches_busybox_list() -> None:
    busybox = shutil.which("busybox")
    if not busybox:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    listed = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    assert _busybox_applets(Path(busybox).read_bytes()) == sorted(listed)


def test_elf_needed_matches_readelf() -> None:
    readelf = shutil.which("readelf")
    if not readelf:
        pytest.skip("readelf is not installed (apt-get install binutils)")
    target = Path(shutil.which("ls") or "/bin/ls").resolve()
    out = subprocess.run([readelf, "-d", str(target)], capture_output=True, text=True, check=True).stdout
    expected = [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]
    assert _elf.needed(target.read_bytes()) == expected and expected


def test_dependency_closure_for_a_foreign_arch_respects_excludes(guest_cache: Path) -> None:
    apt = _debs.private_apt(guest_cache / "debs", load_recipe()["source"])
    names = _debs.closure(apt, ["dropbear-bin"], {"gcc-12-base"}, "arm64")
    assert {"dropbear-bin", "libc6", "libtomcrypt1", "zlib1g"} <= set(names)
    assert "gcc-12-base" not in names


def test_guest_packages_come_from_the_recipe_source_not_the_hosts(tmp_path: Path) -> None:
    """The host's sources do not reach the guest build: a mirror with no such suite fails the update."""
    source = dict(load_recipe()["source"])
    lines = _debs.sources_list(source).splitlines()
    assert lines and all("signed-by=" in line and "arch=amd64,arm64" in line for line in lines)
    assert all(any(suite in line for suite in [*source["suites"], source["security_suite"]]) for line in lines)
    source["suites"] = ["no-such-suite"]
    source.pop("security_suite")
    with pytest.raises(_debs.PackageError, match="^apt-get update failed: .*no-such-suite"):
        _debs.private_apt(tmp_path, source)


# --- a real build and boot -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_build_is_small_complete_for_its_arch_and_cached(arch: str, guest_cache: Path, guest_image) -> None:  # type: ignore[no-untyped-def]
    image = guest_image(arch)
    assert image.recipe_hash == recipe_hash(arch)
    raw = image.initramfs.read_bytes()
    assert raw.startswith(b"070701")
    assert len(gzip.compress(raw, 6)) <= 40_000_000
    entries = {n: (m, b) for n, m, b in read_entries(raw)}
    assert entries["init"][0] & 0o111
    assert stat.S_ISCHR(entries["dev/console"][0])
    python = entries["usr/bin/python3.11"][1]
    assert struct.unpack_from("<H", python, 18)[0] == ELF_MACHINE[arch]
    sources = [n for n in entries if n.startswith("usr/lib/python3.11/") and n.endswith(".py")]
    manifest = json.loads((image.initramfs.parent / "manifest.json").read_text())
    if sys.version_info[:2] == (3, 11):  # the builder compiles the guest's stdlib with its own 3.11
        assert manifest["python_bytecode"] == "sourceless" and not sources
    else:  # another builder's bytecode would not load in the guest: sources, and the manifest says why
        assert manifest["python_bytecode"].startswith("source (builder runs Python") and "os.py" in str(sources)
    assert not [n for n in entries if n.endswith(".ko.xz")]
    load = entries["usr/lib/hostrt/modules.load"][1].decode().split()
    assert any(p.endswith("/overlay.ko") for p in load) and any(p.endswith("/9p.ko") for p in load)
    assert not image.kernel.read_bytes()[:2] == b"\x1f\x8b"  # never a gzipped kernel for -kernel

    before = image.initramfs.stat().st_mtime_ns
    t0 = time.monotonic()
    again = build_guest_image(arch, guest_cache)
    assert again == image and image.initramfs.stat().st_mtime_ns == before
    assert time.monotonic() - t0 < 5


@pytest.mark.slow
def test_modules_load_after_their_dependencies(guest_image) -> None:  # type: ignore[no-untyped-def]
    image = guest_image("amd64")
    entries = {n: b for n, _m, b in read_entries(image.initramfs.read_bytes())}
    order = entries["usr/lib/hostrt/modules.load"].decode().split()
    early = entries["usr/lib/hostrt/modules.early"].decode().split()
    assert any(p.endswith("/virtio_net.ko") for p in early) and any(p.endswith("/virtio-rng.ko") for p in early)
    assert not any(p.endswith("/overlay.ko") for p in early), "containers' modules load after SSH is up"
    assert early == [p for p in order if p in early], "the early ones in the same order"
    deps_file = next(n for n in entries if n.endswith("/modules.dep"))
    for line in entries[deps_file].decode().splitlines():
        module, _, deps = line.partition(":")
        for dep in deps.split():
            assert order.index(dep) < order.index(module), f"{dep} must load before {module}"
            assert module not in early or dep in early, f"{module} loads early: so must {dep}"


@pytest.mark.slow
def test_amd64_kernel_boots_through_pvh(guest_image) -> None:  # type: ignore[no-untyped-def]
    image = guest_image("amd64")
    shipped = (image.kernel.parent / "vmlinuz").read_bytes()
    vmlinux = _kmods.x86_pvh_vmlinux(shipped)
    assert vmlinux is not None and image.kernel.read_bytes() == vmlinux


def _boot_and_check(boot_guest, image, machine: str) -> None:  # type: ignore[no-untyped-def]
    guest = boot_guest(image)
    print(f"{image.arch}: ready {guest.ready_seconds:.1f}s, ssh {guest.ssh_seconds:.1f}s after QEMU start")
    assert guest.run("python3 -c 'import ctypes, json, argparse, signal, select, socket, struct; print(1)'") == (0, "1\n", "")
    assert guest.run("uname -m")[1].strip() == machine
    assert guest.run("hostname")[1].strip() == "testguest"
    rc, mounts, _ = guest.run("cat /proc/mounts")
    assert rc == 0 and " /sys/fs/cgroup cgroup2 " in mounts
    rc, controllers, _ = guest.run("cat /sys/fs/cgroup/cgroup.subtree_control")
    assert {"memory", "pids", "cpu"} <= set(controllers.split())
    # The modules containers need load in the background once SSH is up; the marker says when done.
    assert guest.run("i=0; while [ -e /run/hostrt-modules-loading ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; "
                     "[ ! -e /run/hostrt-modules-loading ]")[0] == 0
    assert "overlay" in guest.run("cat /proc/filesystems")[1]
    # The runtime needs pivot_root: the guest's root must not be the initramfs' rootfs mount.
    pivot = (
        "unshare -m sh -c 'mount --make-rprivate / && mkdir -p /tmp/nr && mount -t tmpfs t /tmp/nr"
        " && mkdir /tmp/nr/old && cd /tmp/nr && pivot_root . old && echo pivoted'"
    )
    assert guest.run(pivot)[1].strip() == "pivoted"
    guest.client.exec_command("poweroff")
    assert guest.process.wait(timeout=120) == 0  # -no-reboot: QEMU exits only on a real power-off


@pytest.mark.slow
def test_amd64_guest_boots_to_ssh_and_powers_off(guest_image, boot_guest) -> None:  # type: ignore[no-untyped-def]
    _boot_and_check(boot_guest, guest_image("amd64"), "x86_64")


@pytest.mark.slow
def test_arm64_guest_boots_to_ssh_and_powers_off(guest_image, boot_guest) -> None:  # type: ignore[no-untyped-def]
    _boot_and_check(boot_guest, guest_image("arm64"), "aarch64")


@pytest.mark.slow
def test_guest_without_machine_overlay_says_why_on_the_console(guest_image, boot_guest) -> None:  # type: ignore[no-untyped-def]
    guest = boot_guest(guest_image("amd64"), overlay=False, wait_for=b"no SSH host key")
    assert b"(the machine overlay is missing)" in guest.console
    assert b"hostrt-guest: ready" not in guest.console


@pytest.mark.slow
def test_rebuild_is_byte_identical(guest_image, guest_cache: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Same recipe, same packages -> same bytes, so a published image and a local build agree."""
    first = guest_image("amd64")
    (tmp_path / "debs").symlink_to(guest_cache / "debs")  # reuse the downloads, rebuild the rest
    second = build_guest_image("amd64", tmp_path)
    assert second.recipe_hash == first.recipe_hash
    assert second.initramfs.read_bytes() == first.initramfs.read_bytes()
    assert second.kernel.read_bytes() == first.kernel.read_bytes()
    assert (second.kernel.parent / "manifest.json").read_text() == (first.kernel.parent / "manifest.json").read_text()
