"""Loading archives: docker save layouts (with linked layers), tampered OCI layouts."""

from __future__ import annotations

import io
import json
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
