"""Writing layers: a reproducible tar+gzip from a list of entries, stored as a blob.

Same inputs, same bytes: entries sorted, owners 0:0, one timestamp, gzip without a name
or mtime. So a rebuilt image has the same digests and a push uploads nothing new.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hostrt.images.store import ContentStore


@dataclass(frozen=True)
class TarEntry:
    """One file of a layer to be: `source` (a file on disk) or `data`, or a dir / symlink."""

    path: str
    kind: str = "file"  # file, dir, symlink
    mode: int = 0o644
    source: Path | None = None
    data: bytes | None = None
    linkname: str = ""


class _HashingWriter(io.RawIOBase):
    def __init__(self, inner: io.BufferedIOBase) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.hash.update(b)
        return self.inner.write(b)


def write_layer(store: ContentStore, entries: list[TarEntry], mtime: int, scratch: Path) -> tuple[str, int, str]:
    """Build a gzip layer in `scratch`, store it; returns (digest, size, diff_id)."""
    scratch.mkdir(parents=True, exist_ok=True)
    out_path = scratch / "layer.tar.gz"
    with out_path.open("wb") as raw_out:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw_out, mtime=0, compresslevel=6) as gz:
            hashing = _HashingWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
                for e in sorted(entries, key=lambda e: e.path):
                    info = tarfile.TarInfo(e.path)
                    info.mtime, info.mode, info.uid, info.gid = mtime, e.mode, 0, 0
                    info.uname = info.gname = ""
                    if e.kind == "dir":
                        info.type = tarfile.DIRTYPE
                        tf.addfile(info)
                    elif e.kind == "symlink":
                        info.type, info.linkname = tarfile.SYMTYPE, e.linkname
                        tf.addfile(info)
                    else:
                        data = e.data if e.data is not None else Path(e.source).read_bytes()  # type: ignore[arg-type]
                        info.size = len(data)
                        tf.addfile(info, io.BytesIO(data))
    diff_id = "sha256:" + hashing.hash.hexdigest()
    digest, size = store.put_file(out_path)
    out_path.unlink()
    return digest, size, diff_id
