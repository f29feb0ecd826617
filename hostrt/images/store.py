"""The content store: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`).

Blobs are addressed by digest and only ever appear complete: bytes go to an ingest file,
the digest and size are checked, then the file is renamed into `blobs/`. A known-digest
ingest keeps its partial file so an interrupted download resumes where it stopped. Names
are the `org.opencontainers.image.ref.name` annotations of `index.json` (the familiar form
of a reference, `busybox:latest`), so skopeo and umoci read the same layout.

Locks: `ingest/<hex>.lock` serialises writers of one blob; `index.lock` guards index.json;
`gc.lock` is held shared by anything that adds content and exclusively by garbage collection,
so collection never deletes a blob that a pull has written but not yet named.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from hostrt.images import digest as digests
from hostrt.images import oci
from hostrt.locks import file_lock
from hostrt.images.errors import DigestMismatchError, ImageNotFoundError

_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
_CHUNK = 1 << 20


class BlobWriter:
    """Writes one blob of known digest; `commit` verifies and publishes it, anything else discards."""

    def __init__(self, store: "ContentStore", digest: str, size: int | None, partial: Path) -> None:
        self.store, self.digest, self.expected_size, self.partial = store, digest, size, partial
        self._hash = hashlib.sha256()
        self.offset = 0
        if partial.exists():
            with partial.open("rb") as old:  # resume: the kept bytes count towards the digest
                while chunk := old.read(_CHUNK):
                    self._hash.update(chunk)
                    self.offset += len(chunk)
            if size is not None and self.offset > size:
                partial.unlink()
                self._hash, self.offset = hashlib.sha256(), 0
        self._file: BinaryIO = partial.open("ab")

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.offset += len(data)
        if self.expected_size is not None and self.offset > self.expected_size:
            self.discard()
            raise DigestMismatchError(f"blob {self.digest} is larger than the {self.expected_size} bytes announced")

    def restart(self) -> None:
        """Drop what was written (the server ignored our Range request)."""
        self._file.seek(0)
        self._file.truncate()
        self._hash, self.offset = hashlib.sha256(), 0

    def commit(self, publish: bool = True) -> Path:
        """Verify the digest and size; then publish the blob, or (publish=False) park it verified in ingest.

        Parking lets a pull make all of an image's blobs visible together, after every one passed.
        """
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self.digest or (self.expected_size is not None and self.offset != self.expected_size):
            self.partial.unlink(missing_ok=True)
            raise DigestMismatchError(
                f"blob {self.digest} failed verification (got {actual}, {self.offset} bytes"
                f"{'' if self.expected_size is None else f' of {self.expected_size}'}): discarded"
            )
        final = self.store.blob_path(self.digest) if publish else self.store.verified_path(self.digest)
        os.replace(self.partial, final)
        return final

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.partial.unlink(missing_ok=True)


class ContentStore:
    """One OCI image layout on disk; safe for several hostrt processes at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"

    # -- layout ------------------------------------------------------------------------
    def init(self) -> "ContentStore":
        """Create the layout if missing (idempotent, safe to race)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(exist_ok=True)
        if not (self.root / "oci-layout").exists():
            self._atomic_write(self.root / "oci-layout", _LAYOUT)
        if not (self.root / "index.json").exists():
            with self._index_lock():
                if not (self.root / "index.json").exists():
                    self._write_index([])
        return self

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # -- blobs -------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs / digests.hex_of(digest)

    def verified_path(self, digest: str) -> Path:
        return self.ingest_dir / f"{digests.hex_of(digest)}.verified"

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.blob_path(digest).stat().st_size

    def open_blob(self, digest: str) -> BinaryIO:
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise ImageNotFoundError(f"blob {digest} is not in the store") from None

    def read(self, digest: str) -> bytes:
        """Read a (small) blob and re-verify it: manifests and configs are trusted only by digest."""
        with self.open_blob(digest) as f:
            data = f.read()
        digests.verify_bytes(data, digest, f"stored blob {digest}")
        return data

    def read_pending(self, digest: str) -> bytes:
        """Read a small blob that is stored or parked verified in ingest (re-verified)."""
        path = self.blob_path(digest) if self.has(digest) else self.verified_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageNotFoundError(f"blob {digest} is not in the store") from None
        digests.verify_bytes(data, digest, f"stored blob {digest}")
        return data

    @contextmanager
    def writer(self, digest: str, size: int | None = None) -> Iterator[BlobWriter | None]:
        """Exclusive writer for `digest`; yields None if the blob is already stored.

        The caller must `commit()`; leaving the block otherwise keeps the partial file for a
        later resume (an exception) — a verification failure has already removed it.
        """
        hex_ = digests.hex_of(digest)
        with file_lock(self.ingest_dir / f"{hex_}.lock"):
            if self.has(digest) or self.verified_path(digest).exists():
                yield None
                return
            w = BlobWriter(self, digest, size, self.ingest_dir / f"{hex_}.partial")
            try:
                yield w
            finally:
                if not w._file.closed:
                    w._file.close()

    def publish(self, digest: str) -> None:
        """Move a parked, verified blob into `blobs/` (nothing to do if it is already there)."""
        with file_lock(self.ingest_dir / f"{digests.hex_of(digest)}.lock"):
            if self.has(digest):
                self.verified_path(digest).unlink(missing_ok=True)
                return
            try:
                os.replace(self.verified_path(digest), self.blob_path(digest))
            except FileNotFoundError:
                raise ImageNotFoundError(f"blob {digest} vanished before it could be stored") from None

    def put_bytes(self, data: bytes, digest: str | None = None) -> str:
        """Store bytes (verifying them when `digest` is given); returns their digest."""
        actual = digests.of_bytes(data)
        if digest is not None and actual != digest:
            raise DigestMismatchError(f"content has digest {actual}, expected {digest}: not stored")
        with self.writer(actual, len(data)) as w:
            if w is not None:
                w.restart()
                w.write(data)
                w.commit()
        return actual

    def put_stream(self, stream: BinaryIO) -> tuple[str, int]:
        """Store a stream of unknown digest (built or imported content); returns (digest, size)."""
        tmp = self.ingest_dir / f"new-{secrets.token_hex(8)}.tmp"
        h, size = hashlib.sha256(), 0
        try:
            with tmp.open("wb") as f:
                while chunk := stream.read(_CHUNK):
                    f.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            digest = "sha256:" + h.hexdigest()
            with file_lock(self.ingest_dir / f"{h.hexdigest()}.lock"):
                if self.has(digest):
                    tmp.unlink()
                else:
                    os.replace(tmp, self.blob_path(digest))
            return digest, size
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_file(self, path: Path) -> tuple[str, int]:
        with Path(path).open("rb") as f:
            return self.put_stream(f)

    def blob_digests(self) -> set[str]:
        return {f"sha256:{p.name}" for p in self.blobs.iterdir() if len(p.name) == 64}

    # -- names -------------------------------------------------------------------------
    def _index_lock(self):  # noqa: ANN202 - a context manager
        return file_lock(self.root / "index.lock")

    def content_lock(self, exclusive: bool = False):  # noqa: ANN202
        """Held shared while adding content, exclusively by garbage collection."""
        return file_lock(self.root / "gc.lock", shared=not exclusive)

    def _read_index(self) -> list[oci.Descriptor]:
        try:
            raw = (self.root / "index.json").read_bytes()
        except FileNotFoundError:
            return []
        return oci.parse_index(raw).manifests

    def _write_index(self, entries: list[oci.Descriptor]) -> None:
        index = oci.Index(schemaVersion=2, mediaType=oci.OCI_INDEX, manifests=entries)
        doc = index.model_dump(mode="json", by_alias=True, exclude_none=True)
        self._atomic_write(self.root / "index.json", json.dumps(doc, indent=2).encode())

    def names(self) -> list[tuple[str, oci.Descriptor]]:
        """(name, descriptor) for every named image; unnamed entries (written by other tools) too, as ''."""
        return [((d.annotations or {}).get(oci.REF_NAME, ""), d) for d in self._read_index()]

    def lookup(self, name: str) -> oci.Descriptor | None:
        for entry_name, desc in self.names():
            if entry_name == name:
                return desc
        return None

    def set_name(self, name: str, descriptor: oci.Descriptor) -> None:
        """Point `name` at a manifest or index already in the store (replacing what it named)."""
        if not self.has(descriptor.digest):
            raise ImageNotFoundError(f"cannot name {name}: {descriptor.digest} is not in the store")
        entry = oci.Descriptor(
            mediaType=descriptor.mediaType,
            digest=descriptor.digest,
            size=descriptor.size,
            platform=descriptor.platform,
            annotations={**(descriptor.annotations or {}), oci.REF_NAME: name},
        )
        with self._index_lock():
            entries = [d for d in self._read_index() if (d.annotations or {}).get(oci.REF_NAME) != name]
            entries.append(entry)
            self._write_index(entries)

    def remove_name(self, name: str) -> oci.Descriptor:
        with self._index_lock():
            entries = self._read_index()
            kept = [d for d in entries if (d.annotations or {}).get(oci.REF_NAME) != name]
            if len(kept) == len(entries):
                raise ImageNotFoundError(f"no such image: {name}")
            self._write_index(kept)
        return next(d for d in entries if (d.annotations or {}).get(oci.REF_NAME) == name)

    # -- graph -------------------------------------------------------------------------
    def children(self, desc: oci.Descriptor) -> list[oci.Descriptor]:
        """The descriptors a manifest or index points at (nothing for other blobs)."""
        if desc.mediaType in oci.INDEX_TYPES:
            return list(oci.parse_index(self.read(desc.digest)).manifests)
        if desc.mediaType in oci.MANIFEST_TYPES:
            m = oci.parse_manifest(self.read(desc.digest))
            return [m.config, *m.layers]
        return []

    def reachable(self, roots: list[oci.Descriptor] | None = None) -> set[str]:
        """Digests reachable from `roots` (default: every name); absent children are skipped
        (an index whose other platforms were never pulled)."""
        seen: set[str] = set()
        stack = list(roots) if roots is not None else [d for _, d in self.names()]
        while stack:
            desc = stack.pop()
            if desc.digest in seen or not self.has(desc.digest):
                continue
            seen.add(desc.digest)
            stack.extend(self.children(desc))
        return seen

    def collect_garbage(self) -> list[str]:
        """Delete blobs and stale ingest files no name reaches; returns the removed digests.

        The caller holds `content_lock(exclusive=True)` (flock is per open file, so this
        method cannot take it itself without deadlocking a caller that already does).
        """
        keep = self.reachable()
        removed = []
        for d in sorted(self.blob_digests() - keep):
            self.blob_path(d).unlink(missing_ok=True)
            removed.append(d)
        for p in self.ingest_dir.iterdir():
            if p.suffix in (".partial", ".tmp", ".verified"):
                p.unlink(missing_ok=True)
        return removed
