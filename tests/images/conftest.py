"""Fixtures of the image tests: a private hostrt root, tar builders, a real registry."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from hostrt.images.store import ContentStore



@pytest.fixture
def hostrt_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "hostrt"
    monkeypatch.setenv("HOSTRT_ROOT", str(root))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    return root


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "store").init()


Entry = dict


def tar_bytes(entries: list[Entry], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar built entry by entry, exactly as a hostile or odd layer would have it.

    Each entry: name, and optionally type (file/dir/symlink/hardlink/chr/fifo), data,
    linkname, mode, uid, gid, mtime, devmajor, devminor, pax (extra pax headers).
    """
    buf = io.BytesIO()
    kinds = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "chr": tarfile.CHRTYPE,
        "blk": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            info = tarfile.TarInfo(e["name"])
            info.type = kinds[e.get("type", "file")]
            info.mode = e.get("mode", 0o755 if e.get("type") == "dir" else 0o644)
            info.uid, info.gid = e.get("uid", 0), e.get("gid", 0)
            info.mtime = e.get("mtime", 1_600_000_000)
            info.linkname = e.get("linkname", "")
            info.devmajor, info.devminor = e.get("devmajor", 0), e.get("devminor", 0)
            if e.get("pax"):
                info.pax_headers = e["pax"]
            data = e.get("data", b"")
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(data) if info.size else None)
    return buf.getvalue()


@pytest.fixture
def make_tar() -> Callable[..., bytes]:
    return tar_bytes


# -- registries --------------------------------------------------------------------------
from .registry_server import REGISTRY_BIN, TokenIssuer, start_registry  # noqa: E402

needs_registry = pytest.mark.skipif(REGISTRY_BIN is None, reason="docker-registry (Debian package) is not installed")


@pytest.fixture
def registry(tmp_path: Path):  # noqa: ANN201
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry (Debian package docker-registry) is not installed")
    reg = start_registry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture
def basic_registry(tmp_path: Path):  # noqa: ANN201
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry (Debian package docker-registry) is not installed")
    reg = start_registry(tmp_path / "registry", auth="basic", users={"alice": "s3cret"})
    yield reg
    reg.stop()


@pytest.fixture
def token_registry(tmp_path: Path):  # noqa: ANN201
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry (Debian package docker-registry) is not installed")
    issuer = TokenIssuer(tmp_path / "issuer", users={"bob": "hunter2"}, anonymous_pull=True)
    reg = start_registry(tmp_path / "registry", auth="token", issuer=issuer)
    reg.issuer = issuer  # type: ignore[attr-defined]
    yield reg
    reg.stop()
    issuer.stop()


# -- the busybox image, built once per session -------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def busybox_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hostrt root holding busybox:latest built from the recipe (needs apt + arm64 enabled)."""
    import shutil as _shutil

    from hostrt.images.errors import RecipeError
    from hostrt.images.recipe import build

    if _shutil.which("apt-get") is None or _shutil.which("dpkg-deb") is None:
        pytest.skip("building the busybox recipe needs apt-get and dpkg-deb (a Debian host)")
    root = tmp_path_factory.mktemp("busybox-root")
    store = ContentStore(root / "store").init()
    cache = Path(__import__("os").environ.get("HOSTRT_TEST_DEB_CACHE", str(root / "debs")))
    try:
        build(REPO_ROOT / "images" / "busybox", store, cache)
    except RecipeError as err:
        pytest.fail(f"busybox recipe did not build: {err}")
    return root


@pytest.fixture
def busybox_root(busybox_store: Path, hostrt_root: Path) -> Path:
    """A fresh hostrt root (HOSTRT_ROOT) that already holds busybox:latest."""
    import shutil as _shutil

    _shutil.copytree(busybox_store / "store", hostrt_root / "store")
    return hostrt_root


def make_image(store: ContentStore, name: str, layers: list[bytes], arch: str = "amd64", docker: bool = False) -> str:
    """Store a single-platform image of gzip layers (given as raw tars); returns its manifest digest.

    docker=True writes Docker schema2 media types instead of OCI ones.
    """
    import gzip as _gzip

    from hostrt.images import oci
    from hostrt.images.digest import of_bytes

    descs, diff_ids = [], []
    for raw in layers:
        blob = _gzip.compress(raw, mtime=0, compresslevel=1)
        layer_type = oci.DOCKER_LAYER_GZIP if docker else oci.OCI_LAYER_GZIP
        descs.append(oci.Descriptor(mediaType=layer_type, digest=store.put_bytes(blob), size=len(blob)))
        diff_ids.append(of_bytes(raw))
    config = oci.dump(oci.ImageConfig(architecture=arch, os="linux", config={"Cmd": ["sh"]},
                                      rootfs=oci.RootFS(diff_ids=diff_ids)))
    manifest_type = oci.DOCKER_MANIFEST if docker else oci.OCI_MANIFEST
    manifest = oci.dump(oci.Manifest(
        mediaType=manifest_type,
        config=oci.Descriptor(mediaType=oci.DOCKER_CONFIG if docker else oci.OCI_CONFIG,
                              digest=store.put_bytes(config), size=len(config)),
        layers=descs,
    ))
    digest = store.put_bytes(manifest)
    store.set_name(name, oci.Descriptor(mediaType=manifest_type, digest=digest, size=len(manifest)))
    return digest
