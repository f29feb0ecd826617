"""The image commands as a user runs them: the README's sequence, errors, and archives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, tar_bytes


def hostrt(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "hostrt", *args], capture_output=True, text=True, timeout=300, env=os.environ)
    if ok:
        assert proc.returncode == 0, f"hostrt {' '.join(args)}: {proc.stderr}"
    return proc


def test_build_push_rmi_pull_inspect(busybox_store: Path, hostrt_root: Path, registry) -> None:
    cache = busybox_store / "debs"
    if cache.is_dir():  # reuse the session's downloaded packages through the cache directory
        shutil.copytree(cache, hostrt_root / "cache" / "debs")
    built = hostrt("image", "build", str(REPO_ROOT / "images" / "busybox"))
    index_digest = built.stdout.split()[-1]
    dest = f"{registry.host}/busybox"
    pushed = hostrt("push", dest).stdout  # the local busybox:latest, to the registry
    assert pushed.startswith(f"busybox:latest -> {dest}:latest: digest {index_digest}")
    hostrt("rmi", "busybox")
    assert json.loads(hostrt("images", "--format", "json").stdout) == []
    assert list((hostrt_root / "store" / "blobs" / "sha256").iterdir()) == []
    out = hostrt("pull", "--platform", "linux/arm64", dest).stdout
    assert "linux/arm64" in out and index_digest in out
    info = json.loads(hostrt("inspect", dest).stdout)[0]  # docker inspect prints a list
    assert info["platform"] == "linux/arm64" and info["digest"] == index_digest
    assert info["config"]["Cmd"] == ["sh"]
    assert info["platforms"] == ["linux/amd64", "linux/arm64"]
    rows = json.loads(hostrt("images", "--format", "json").stdout)
    assert [(r["name"], r["platforms"]) for r in rows] == [(f"{dest}:latest", ["linux/arm64"])]
    missing = hostrt("inspect", "--platform", "linux/amd64", dest, ok=False)
    assert missing.returncode == 125 and "linux/amd64 (not pulled)" in missing.stderr


def test_busybox_image_content(busybox_root: Path) -> None:
    from hostrt.images.local import LocalImages, details
    from hostrt.platform import ImagePlatform

    local = LocalImages.open()
    for plat, machine in (("linux/amd64", b"\x3e\x00"), ("linux/arm64", b"\xb7\x00")):
        d = details(local.store, "busybox", ImagePlatform.parse(plat))
        layer = local.layers.ensure(local.store, d.layers[0].digest, d.layers[0].mediaType, d.layers[0].diff_id)
        elf = (layer / "bin" / "busybox").read_bytes()
        assert elf[:4] == b"\x7fELF" and elf[18:20] == machine  # e_machine: x86-64 / aarch64
        assert os.readlink(layer / "bin" / "sh") == "busybox"
        assert (layer / "bin" / "ls").is_symlink() and (layer / "etc" / "passwd").read_text().startswith("root:")
        assert oct((layer / "tmp").stat().st_mode & 0o7777) == "0o1777"
    if os.uname().machine == "x86_64":
        layer = local.layers.path(details(local.store, "busybox", ImagePlatform.parse("linux/amd64")).layers[0].digest)
        out = subprocess.run([str(layer / "bin" / "busybox"), "echo", "hi"], capture_output=True, text=True)
        assert out.stdout == "hi\n"


def test_bad_input_is_one_line_and_exit_125(hostrt_root: Path) -> None:
    for args, message in (
        (("pull", "Not/Valid"), "invalid reference 'Not/Valid': invalid name component 'Not'"),
        (("pull", "--platform", "linux", "busybox"), "invalid platform 'linux'"),
        (("inspect", "nothing"), "no such image: nothing"),
        (("rmi", "nothing"), "no such image: nothing"),
        (("image", "build", str(hostrt_root)), "is not a recipe: it has no recipe.toml"),
        (("load", "-i", str(hostrt_root / "missing.tar")), "no such file or directory"),
    ):
        proc = hostrt(*args, ok=False)
        assert proc.returncode == 125, (args, proc.stderr)
        assert proc.stderr.strip() == f"hostrt: error: {proc.stderr.strip().removeprefix('hostrt: error: ')}"
        assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_cli_does_not_import_requests_for_info_or_version(hostrt_root: Path) -> None:
    code = "import sys; from hostrt.__main__ import main; main(['info']); print('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_import_save_load_tag(hostrt_root: Path, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(tar_bytes([{"name": "hello.txt", "data": b"hello"}]))
    hostrt("import", str(rootfs), "imported:v1")
    hostrt("tag", "imported:v1", "imported:v2")
    archive = tmp_path / "saved.tar"
    hostrt("save", "-o", str(archive), "imported:v1", "imported:v2")
    hostrt("rmi", "imported:v1")
    hostrt("rmi", "imported:v2")
    assert json.loads(hostrt("images", "-f", "json").stdout) == []
    out = hostrt("load", "-i", str(archive)).stdout
    assert "imported:v1" in out and "imported:v2" in out
    info = json.loads(hostrt("inspect", "imported:v2").stdout)[0]
    from hostrt.images.local import LocalImages

    local = LocalImages.open()
    layer = local.layers.ensure(local.store, info["layers"][0]["digest"], info["layers"][0]["mediaType"], info["layers"][0]["diff_id"])
    assert (layer / "hello.txt").read_bytes() == b"hello"
    hostrt("rmi", "imported:v1")
    hostrt("image", "prune")
    assert layer.exists()  # imported:v2 still uses it
    hostrt("rmi", "imported:v2")
    hostrt("image", "prune")
    assert not layer.exists()  # the unpacked layer is collected with its image


def test_recipe_finds_files_that_a_merged_usr_distribution_moved(tmp_path: Path) -> None:
    """Debian 13's busybox-static ships usr/bin/busybox: the recipe's bin/busybox still resolves."""
    from hostrt.images import recipe as recipes

    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        pytest.skip("busybox-static is not installed")
    recipe_dir = REPO_ROOT / "images" / "busybox"
    unpacked = tmp_path / "unpacked"
    (unpacked / "usr" / "bin").mkdir(parents=True)
    shutil.copy2(busybox, unpacked / "usr" / "bin" / "busybox")
    entries = {e.path: e for e in recipes._entries(recipes.load(recipe_dir), recipe_dir, unpacked)}
    assert entries["bin/busybox"].source == unpacked / "usr" / "bin" / "busybox"
    assert entries["bin/sh"].kind == "symlink" and entries["bin/sh"].linkname == "busybox"
    (unpacked / "usr" / "bin" / "busybox").unlink()
    with pytest.raises(recipes.RecipeError, match="bin/busybox"):
        recipes._entries(recipes.load(recipe_dir), recipe_dir, unpacked)


def test_busybox_applet_table_is_found_whatever_precedes_it() -> None:
    """busybox 1.35 (Debian 12) has a NUL before the table, 1.37 (Debian 13) a data byte."""
    from hostrt.images.recipe import RecipeError, busybox_applets

    names = ["[", "[[", "acpid", "ash", "cat", "echo", "ls", "mount", "sh", "sleep", "true"]
    table = b"\0".join(n.encode() for n in names) + b"\0\0"
    decoy = b"[\0[[\0\x89\xfe\0"  # the same first bytes in code, not followed by a table
    for before in (b"\x00", b" ", b"\xae "):
        assert busybox_applets(b"\x7fELF" + decoy + b"code" + before + table + b"rest") == names
    with pytest.raises(RecipeError, match="applet table"):
        busybox_applets(b"\x7fELF" + decoy + b"rest")
