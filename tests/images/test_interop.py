"""Other OCI tools read our store, and we load what they write."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hostrt.images import oci
from hostrt.images.archive import load
from hostrt.images.local import LocalImages, details
from hostrt.paths import Paths
from hostrt.platform import ImagePlatform

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
needs_umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")


def run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr}"
    return proc.stdout


@needs_umoci
def test_umoci_lists_our_store(busybox_root: Path) -> None:
    assert run("umoci", "ls", "--layout", str(busybox_root / "store")).split() == ["busybox:latest"]


@needs_skopeo
def test_skopeo_copies_from_our_store_and_we_load_its_docker_archive(busybox_root: Path, tmp_path: Path) -> None:
    store = busybox_root / "store"
    archive = tmp_path / "bb.tar"
    run("skopeo", "copy", "--override-arch", "arm64", f"oci:{store}:busybox:latest", f"docker-archive:{archive}:bb:arm")
    other = LocalImages.open(Paths(root=tmp_path / "other", run=tmp_path / "other" / "run"))
    assert load(other, archive).names == ["bb:arm"]
    ours = details(LocalImages.open().store, "busybox", ImagePlatform.parse("linux/arm64"))
    theirs = details(other.store, "bb:arm")
    assert theirs.platform == "linux/arm64"
    assert [l.diff_id for l in theirs.layers] == [l.diff_id for l in ours.layers]
    layer = other.layers.ensure(other.store, theirs.layers[0].digest, theirs.layers[0].mediaType, theirs.layers[0].diff_id)
    assert (layer / "bin" / "busybox").is_file()


@needs_skopeo
def test_we_load_an_oci_layout_written_by_skopeo(busybox_root: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    run("skopeo", "copy", "--all", f"oci:{busybox_root / 'store'}:busybox:latest", f"oci:{layout}:copied")
    other = LocalImages.open(Paths(root=tmp_path / "other", run=tmp_path / "other" / "run"))
    assert load(other, layout).names == ["copied:latest"]
    ours = LocalImages.open().store.lookup("busybox:latest")
    assert other.store.lookup("copied:latest").digest == ours.digest


@needs_umoci
def test_we_load_an_image_made_by_umoci(hostrt_root: Path, tmp_path: Path) -> None:
    layout = tmp_path / "umoci"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:made")
    note = tmp_path / "note.txt"
    note.write_text("from umoci\n")
    run("umoci", "insert", "--image", f"{layout}:made", str(note), "/etc/note.txt")
    run("umoci", "config", "--image", f"{layout}:made", "--config.cmd", "/bin/true")
    local = LocalImages.open()
    assert load(local, layout).names == ["made:latest"]
    d = details(local.store, "made")
    assert d.config["Cmd"] == ["/bin/true"]
    layer = local.layers.ensure(local.store, d.layers[-1].digest, d.layers[-1].mediaType, d.layers[-1].diff_id)
    assert (layer / "etc" / "note.txt").read_text() == "from umoci\n"
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] in {d.digest, d.manifest_digest}


@needs_skopeo
def test_skopeo_reads_what_we_pushed(busybox_root: Path, registry) -> None:
    from hostrt.images.push import push

    pushed = push(LocalImages.open(), "busybox", f"{registry.host}/busybox")
    raw = json.loads(run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/busybox"))
    assert raw["mediaType"] == oci.OCI_INDEX and len(raw["manifests"]) == 2
    info = json.loads(run("skopeo", "inspect", "--tls-verify=false", "--override-arch", "arm64", f"docker://{registry.host}/busybox"))
    assert info["Architecture"] == "arm64" and info["Digest"] == pushed.digest
