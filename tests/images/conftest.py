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
