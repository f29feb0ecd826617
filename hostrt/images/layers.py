"""Unpacked layers: one read-only directory per layer digest, shared by every container.

A layer is unpacked into `.tmp-*` beside its final place and renamed when complete, so a
directory named by a digest is always whole; a lock per layer stops two processes
unpacking the same layer at once. Knows the store only through a blob's digest.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

from hostrt.images import digest as digests
from hostrt.locks import file_lock
from hostrt.images.oci import LAYER_COMPRESSION
from hostrt.images.store import ContentStore
from hostrt.images.errors import UnpackError
from hostrt.images.unpack import UnpackResult, unpack_layer


class LayerDirs:
    """The directory of unpacked layers (`Paths.layers`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._locks = self.root / ".locks"
        self._meta = self.root / ".meta"

    def path(self, layer_digest: str) -> Path:
        return self.root / digests.hex_of(layer_digest)

    def has(self, layer_digest: str) -> bool:
        return self.path(layer_digest).is_dir()

    def ensure(
        self, store: ContentStore, layer_digest: str, media_type: str, diff_id: str | None = None
    ) -> Path:
        """The unpacked directory of a layer blob in `store`, unpacking it first if needed."""
        compression = LAYER_COMPRESSION.get(media_type)
        if compression is None:
            raise UnpackError(f"layer {layer_digest} has unsupported media type {media_type!r}")
        final = self.path(layer_digest)
        if final.is_dir():
            return final
        for d in (self.root, self._locks, self._meta):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)  # layers may hold setuid files
        hex_ = digests.hex_of(layer_digest)
        with store.content_lock(), file_lock(self._locks / hex_):
            if final.is_dir():
                return final
            tmp = self.root / f".tmp-{hex_[:16]}-{secrets.token_hex(4)}"
            tmp.mkdir(mode=0o755)
            try:
                with store.open_blob(layer_digest) as blob:
                    result = unpack_layer(blob, compression, tmp, expected_diff_id=diff_id)
                self._write_meta(hex_, layer_digest, result)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return final

    def _write_meta(self, hex_: str, layer_digest: str, result: UnpackResult) -> None:
        meta = {"digest": layer_digest, "diff_id": result.diff_id, "size": result.size, "skipped": result.skipped}
        (self._meta / f"{hex_}.json").write_text(json.dumps(meta))

    def digests(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        return {f"sha256:{p.name}" for p in self.root.iterdir() if len(p.name) == 64 and p.is_dir()}

    def prune(self, keep: set[str]) -> list[str]:
        """Remove unpacked layers whose blob digest is not in `keep`, and leftovers of crashed unpacks.

        The caller holds the store's exclusive content lock, so no unpack is under way.
        """
        removed = []
        for d in sorted(self.digests() - keep):
            hex_ = digests.hex_of(d)
            with file_lock(self._locks / hex_):
                # Rename first so a half-deleted tree never carries a digest's name.
                doomed = self.root / f".tmp-rm-{hex_[:16]}-{secrets.token_hex(4)}"
                os.rename(self.path(d), doomed)
                shutil.rmtree(doomed, ignore_errors=True)
                (self._meta / f"{hex_}.json").unlink(missing_ok=True)
            removed.append(d)
        if self.root.is_dir():
            for p in self.root.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)
        return removed
