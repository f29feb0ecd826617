"""The content store: verified writes, names in index.json, concurrency, garbage collection."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from hostrt.images import oci
from hostrt.images.digest import of_bytes
from hostrt.images.errors import DigestMismatchError, ImageNotFoundError
from hostrt.images.store import ContentStore

from .conftest import make_image, tar_bytes


def test_layout_files(store: ContentStore) -> None:
    assert json.loads((store.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads((store.root / "index.json").read_text())["manifests"] == []


def test_put_verifies_digest_and_size(store: ContentStore) -> None:
    data = b"hello"
    with pytest.raises(DigestMismatchError, match="not stored"):
        store.put_bytes(data, of_bytes(b"other"))
    assert store.blob_digests() == set()
    d = of_bytes(data)
    with store.writer(d, 4) as w:
        with pytest.raises(DigestMismatchError, match="larger than the 4 bytes"):
            w.write(data)
    assert not store.has(d) and list(store.ingest_dir.glob("*.partial")) == []
    with store.writer(d, len(data)) as w:
        w.write(b"hellO")
        with pytest.raises(DigestMismatchError, match="failed verification"):
            w.commit()
    assert not store.has(d) and list(store.ingest_dir.glob("*.partial")) == []
    assert store.put_bytes(data, d) == d and store.read(d) == data


def test_a_stored_blob_that_rots_is_detected_on_read(store: ContentStore) -> None:
    d = store.put_bytes(b'{"a":1}')
    store.blob_path(d).write_bytes(b'{"a":2}')
    with pytest.raises(DigestMismatchError, match=f"stored blob {d}"):
        store.read(d)


def test_names_map_to_digests_and_other_tools_see_them(store: ContentStore) -> None:
    digest = make_image(store, "app:1", [tar_bytes([{"name": "f", "data": b"x"}])])
    index = json.loads((store.root / "index.json").read_text())
    assert index["manifests"][0]["annotations"] == {oci.REF_NAME: "app:1"}
    assert store.lookup("app:1").digest == digest
    store.set_name("app:1", store.lookup("app:1"))  # renaming to itself keeps one entry
    assert len(store.names()) == 1
    with pytest.raises(ImageNotFoundError):
        store.set_name("ghost:1", oci.Descriptor(mediaType=oci.OCI_MANIFEST, digest="sha256:" + "0" * 64, size=1))


def test_gc_keeps_reachable_and_removes_the_rest(store: ContentStore) -> None:
    keep = make_image(store, "keep:1", [tar_bytes([{"name": "k", "data": b"k"}])])
    make_image(store, "drop:1", [tar_bytes([{"name": "d", "data": b"d"}])])
    stray = store.put_bytes(b"stray")
    store.remove_name("drop:1")
    with store.content_lock(exclusive=True):
        removed = store.collect_garbage()
    assert stray in removed and len(removed) == 4  # stray + drop's manifest, config, layer
    assert store.reachable() == store.blob_digests() and keep in store.blob_digests()


def _write_same_blob(root: str, data: bytes, n: int) -> None:
    store = ContentStore(Path(root)).init()
    for _ in range(n):
        store.put_stream(io.BytesIO(data))
        store.put_bytes(data)


def _name_many(root: str, prefix: str, n: int) -> None:
    store = ContentStore(Path(root)).init()
    desc = store.lookup("base:1")
    for i in range(n):
        store.set_name(f"{prefix}:{i}", desc)


def test_concurrent_writers_and_namers(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = ContentStore(root).init()
    make_image(store, "base:1", [tar_bytes([{"name": "b", "data": b"b"}])])
    data = os.urandom(1 << 20)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_same_blob, args=(str(root), data, 10)) for _ in range(3)]
    procs += [ctx.Process(target=_name_many, args=(str(root), f"n{i}", 20)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    assert store.read(of_bytes(data)) == data
    assert len(store.names()) == 1 + 3 * 20  # no lost update of index.json
    assert not [p for p in store.ingest_dir.iterdir() if p.suffix in (".partial", ".tmp")]
