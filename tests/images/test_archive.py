"""Loading archives: docker save layouts (with linked layers), tampered OCI layouts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hostrt.images.archive import load, save
from hostrt.images.digest import of_bytes
from hostrt.images.errors import DigestMismatchError
from hostrt.images.local import LocalImages, details, unpacked_layers

from .conftest import make_image, tar_bytes


def _add(tf: tarfile.TarFile, name: str, data: bytes | None = None, link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tf.addfile(info)
    else:
        info.size = len(data or b"")
        tf.addfile(info, io.BytesIO(data or b""))


def test_docker_save_archive_with_a_linked_layer(hostrt_root: Path, tmp_path: Path) -> None:
    layer = tar_bytes([{"name": "same.txt", "data": b"same"}])
    top = tar_bytes([{"name": "top.txt", "data": b"top"}])
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [of_bytes(layer), of_bytes(top), of_bytes(layer)]}}).encode()
    archive = tmp_path / "docker.tar"
    with tarfile.open(archive, "w") as tf:
        _add(tf, "aaa/layer.tar", layer)
        _add(tf, "bbb/layer.tar", top)
        _add(tf, "ccc/layer.tar", link="../aaa/layer.tar")
        _add(tf, "cfg.json", config)
        _add(tf, "manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": ["old/app:1"],
                                                "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"]}]).encode())
    local = LocalImages.open()
    assert load(local, archive).names == ["old/app:1"]
    dirs = unpacked_layers(local, "old/app:1")
    assert [p.name for p in dirs][0] == [p.name for p in dirs][2]
    assert (dirs[1] / "top.txt").read_bytes() == b"top"


def test_docker_archive_with_a_layer_that_lies_about_its_diff_id(hostrt_root: Path, tmp_path: Path) -> None:
    layer = tar_bytes([{"name": "a", "data": b"a"}])
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}}).encode()
    archive = tmp_path / "docker.tar"
    with tarfile.open(archive, "w") as tf:
        _add(tf, "l/layer.tar", layer)
        _add(tf, "c.json", config)
        _add(tf, "manifest.json", json.dumps([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]).encode())
    with pytest.raises(DigestMismatchError, match="l/layer.tar"):
        load(LocalImages.open(), archive)


def test_tampered_oci_archive_is_refused(hostrt_root: Path, tmp_path: Path) -> None:
    local = LocalImages.open()
    digest = make_image(local.store, "app:1", [tar_bytes([{"name": "f", "data": b"original"}])])
    layer = details(local.store, "app:1").layers[0].digest
    good = tmp_path / "good.tar"
    save(local, ["app:1"], good)
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name.endswith(layer.split(":")[1]):
                data = data[:-9] + bytes(9)
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    other_root = tmp_path / "other"
    from hostrt.paths import Paths

    other = LocalImages.open(Paths(root=other_root, run=other_root / "run"))
    with pytest.raises(DigestMismatchError, match=layer):
        load(other, bad)
    assert not other.store.has(layer) and other.store.names() == []
    assert load(other, good).names == ["app:1"] and other.store.lookup("app:1").digest == digest


def _docker_save_dir(tmp_path: Path, config_rel: str, layer_rels: list[str]) -> Path:
    """A `docker save` directory with a good config and layer, whose manifest names CONFIG_REL
    and LAYER_RELS (the hostile part)."""
    layer = tar_bytes([{"name": "a", "data": b"a"}])
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [of_bytes(layer)]}}).encode()
    d = tmp_path / "saved"
    (d / "l").mkdir(parents=True)
    (d / "l" / "layer.tar").write_bytes(layer)
    (d / "c.json").write_bytes(config)
    (d / "manifest.json").write_text(json.dumps([{"Config": config_rel, "RepoTags": ["evil:1"], "Layers": layer_rels}]))
    return d


_UP = "../" * 16


@pytest.mark.parametrize(("config", "layers", "named"), [
    (_UP + "etc/passwd", ["l/layer.tar"], "outside the archive"),
    ("/etc/passwd", ["l/layer.tar"], "outside the archive"),
    ("c.json", ["l/layer.tar", _UP + "etc/passwd"], "outside the archive"),
    ("c.json", ["/etc/passwd"], "outside the archive"),
    ("c.json", ["l/../../saved/l/layer.tar"], "outside the archive"),
    ("c.json", ["escape"], "does not hold"),  # a link in the directory to /etc/passwd
])
def test_load_refuses_manifest_paths_outside_the_directory(hostrt_root: Path, tmp_path: Path, config: str,
                                                           layers: list[str], named: str) -> None:
    d = _docker_save_dir(tmp_path, config, layers)
    (d / "escape").symlink_to("/etc/passwd")
    proc = subprocess.run([sys.executable, "-m", "hostrt", "load", "-i", str(d)], capture_output=True, text=True,
                          timeout=120, env=os.environ)
    assert proc.returncode == 125 and named in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    blobs = hostrt_root / "store" / "blobs" / "sha256"
    assert not blobs.exists() or list(blobs.iterdir()) == [], "load stored something"
    assert LocalImages.open().store.names() == []


def test_load_refuses_manifest_paths_outside_a_tar(hostrt_root: Path, tmp_path: Path) -> None:
    archive = tmp_path / "docker.tar"
    with tarfile.open(archive, "w") as tf:
        _add(tf, "manifest.json", json.dumps([{"Config": "/etc/passwd", "RepoTags": ["x:1"], "Layers": []}]).encode())
    from hostrt.images.errors import UsageError

    with pytest.raises(UsageError, match="outside the archive"):
        load(LocalImages.open(), archive)
    assert LocalImages.open().store.names() == []


def test_load_of_a_good_docker_save_directory(hostrt_root: Path, tmp_path: Path) -> None:
    d = _docker_save_dir(tmp_path, "c.json", ["./l/layer.tar"])
    assert load(LocalImages.open(), d).names == ["evil:1"]
