"""Images in files: load OCI layouts/archives and `docker save` archives, save OCI archives,
and import a rootfs tarball as a one-layer image.

Every blob read from a file goes through the store's verified writers: a digest named in
an archive is checked, never trusted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from hostrt.images import digest as digests
from hostrt.images import oci
from hostrt.images import reference as references
from hostrt.images.errors import DigestMismatchError, InvalidReferenceError, UsageError
from hostrt.images.local import LocalImages, host_platform, resolve
from hostrt.platform import ImagePlatform


@dataclass
class LoadResult:
    names: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)  # digests of images the archive did not name


class _Source:
    """Read files of a layout by relative path, from a directory or a tar archive.

    The paths come from the archive itself (manifest.json's Config and Layers): each must
    be a plain relative path, and in a directory it is opened inside that directory
    (backends/linux_native/inroot.py), so neither `../..`, `/etc/shadow` nor a symlink in
    the directory can make `load` read a host file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tar: tarfile.TarFile | None = None
        if self.path.is_file():
            try:
                self.tar = tarfile.open(self.path, "r:*")
            except tarfile.TarError as err:
                raise UsageError(f"{path} is not a tar archive or an OCI layout directory: {err}") from None
            all_members = {posixpath.normpath(m.name): m for m in self.tar.getmembers()}
            self.members = {}
            for name, m in all_members.items():
                for _ in range(8):  # docker save links repeated layers to their first copy
                    if not m.issym():
                        break
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(name), m.linkname))
                    m = all_members.get(target, m) if target != name else m
                if m.isfile():
                    self.members[name] = m
        elif not self.path.is_dir():
            raise UsageError(f"no such file or directory: {path}")

    def check(self, rel: object) -> str:
        """REL as a normalized path inside the layout, or a UsageError naming it."""
        if not isinstance(rel, str) or not rel:
            raise UsageError(f"{self.path}: manifest.json names no file where it needs one: {rel!r}")
        norm = posixpath.normpath(rel)
        if rel.startswith("/") or norm == ".." or norm.startswith("../") or "\0" in rel:
            raise UsageError(f"{self.path}: manifest.json names a file outside the archive: {rel}")
        return norm

    def _open_file(self, rel: str) -> int:
        """A read fd of regular file REL inside the layout directory; -1 if there is none."""
        from backends.linux_native import inroot

        try:
            held = inroot.open_in_root(str(self.path), rel)
        except OSError:
            return -1
        try:
            if not stat.S_ISREG(os.fstat(held).st_mode):
                return -1
            return os.open(inroot.fd_path(held), os.O_RDONLY | os.O_CLOEXEC)  # the inode held, now readable
        finally:
            os.close(held)

    def exists(self, rel: str) -> bool:
        rel = self.check(rel)
        if self.tar:
            return rel in self.members
        fd = self._open_file(rel)
        if fd >= 0:
            os.close(fd)
        return fd >= 0

    @contextmanager
    def open(self, rel: str) -> Iterator[BinaryIO]:
        rel = self.check(rel)
        if self.tar:
            member = self.members.get(rel)
            if member is None:
                raise UsageError(f"{self.path}: the archive has no {rel}")
            f = self.tar.extractfile(member)
            assert f is not None
            yield f  # type: ignore[misc]
        else:
            fd = self._open_file(rel)
            if fd < 0:
                raise UsageError(f"{self.path}: the layout has no file {rel}")
            with os.fdopen(fd, "rb") as f:
                yield f

    def read(self, rel: str) -> bytes:
        with self.open(rel) as f:
            return f.read()


def _copy_blob(images: LocalImages, src: _Source, desc: oci.Descriptor) -> None:
    store = images.store
    with store.writer(desc.digest, desc.size) as w:
        if w is None:
            return
        w.restart()
        with src.open(f"blobs/sha256/{digests.hex_of(desc.digest)}") as f:
            while chunk := f.read(1 << 20):
                w.write(chunk)
        w.commit()


def _load_oci(images: LocalImages, src: _Source, fallback_name: str | None) -> LoadResult:
    result = LoadResult()
    top = oci.parse_index(src.read("index.json"))

    def copy_tree(desc: oci.Descriptor) -> None:
        hex_path = f"blobs/sha256/{digests.hex_of(desc.digest)}"
        if desc.mediaType in oci.INDEX_TYPES:
            data = src.read(hex_path)
            digests.verify_bytes(data, desc.digest, f"index {desc.digest}")
            for child in oci.parse_index(data).manifests:
                if src.exists(f"blobs/sha256/{digests.hex_of(child.digest)}"):
                    copy_tree(child)  # a partial index (one platform copied) is fine
        elif desc.mediaType in oci.MANIFEST_TYPES:
            data = src.read(hex_path)
            digests.verify_bytes(data, desc.digest, f"manifest {desc.digest}")
            m = oci.parse_manifest(data)
            for blob in (m.config, *m.layers):
                _copy_blob(images, src, blob)
        _copy_blob(images, src, desc)

    for desc in top.manifests:
        with images.store.content_lock():
            copy_tree(desc)
            ann = desc.annotations or {}
            name = None
            for candidate in (ann.get(oci.REF_NAME), ann.get("io.containerd.image.name"), fallback_name):
                if not candidate:
                    continue
                try:
                    name = references.parse(candidate).familiar()
                    break
                except InvalidReferenceError:
                    continue
            if name:
                images.store.set_name(name, oci.Descriptor(mediaType=desc.mediaType, digest=desc.digest, size=desc.size))
                result.names.append(name)
            else:
                result.unnamed.append(desc.digest)
    return result


def _load_docker(images: LocalImages, src: _Source) -> LoadResult:
    result = LoadResult()
    store = images.store
    try:
        entries = json.loads(src.read("manifest.json"))
    except ValueError as err:
        raise UsageError(f"{src.path}: manifest.json is not JSON: {err}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UsageError(f"{src.path}: manifest.json is not a list of images")
    for entry in entries:  # every path checked before anything is stored
        layers = entry.get("Layers") or []
        for rel in (entry.get("Config"), *(layers if isinstance(layers, list) else [None])):
            if not src.exists(rel):
                raise UsageError(f"{src.path}: manifest.json names {rel!r}, which the archive does not hold")
    for entry in entries:
        with store.content_lock():
            config_bytes = src.read(entry["Config"])
            config_digest = store.put_bytes(config_bytes)
            config = oci.parse_config(config_bytes)
            layers = []
            for i, rel in enumerate(entry.get("Layers", [])):
                with src.open(rel) as f:
                    digest, size = store.put_stream(f)
                with store.open_blob(digest) as f:
                    gz = f.read(2) == b"\x1f\x8b"
                media = oci.DOCKER_LAYER_GZIP if gz else oci.OCI_LAYER
                if not gz and i < len(config.rootfs.diff_ids) and config.rootfs.diff_ids[i] != digest:
                    raise DigestMismatchError(f"{src.path}: layer {rel} does not match the config's diff id")
                layers.append(oci.Descriptor(mediaType=media, digest=digest, size=size))
            manifest = oci.dump(oci.Manifest(
                mediaType=oci.OCI_MANIFEST,
                config=oci.Descriptor(mediaType=oci.OCI_CONFIG, digest=config_digest, size=len(config_bytes)),
                layers=layers,
            ))
            mdesc = oci.Descriptor(mediaType=oci.OCI_MANIFEST, digest=store.put_bytes(manifest), size=len(manifest))
            tags = entry.get("RepoTags") or []
            for tag in tags:
                name = references.parse(tag).familiar()
                store.set_name(name, mdesc)
                result.names.append(name)
            if not tags:
                result.unnamed.append(mdesc.digest)
    return result


def load(images: LocalImages, path: Path, name: str | None = None) -> LoadResult:
    """Load every image of an OCI layout (directory or archive) or a `docker save` archive."""
    src = _Source(path)
    if src.exists("index.json") and src.exists("oci-layout"):
        return _load_oci(images, src, name)
    if src.exists("manifest.json"):
        return _load_docker(images, src)
    raise UsageError(f"{path} is neither an OCI layout (oci-layout, index.json) nor a docker save archive (manifest.json)")


def save(images: LocalImages, names: list[str], out: Path) -> list[str]:
    """Write the named images (and only their content) as an OCI archive; returns their names."""
    store = images.store
    entries, roots = [], []
    for text in names:
        name, desc = resolve(store, text)
        entries.append(oci.Descriptor(mediaType=desc.mediaType, digest=desc.digest, size=desc.size,
                                      annotations={oci.REF_NAME: name}))
        roots.append(desc)
    wanted = store.reachable(roots)
    index = json.dumps(oci.Index(schemaVersion=2, mediaType=oci.OCI_INDEX, manifests=entries)
                       .model_dump(mode="json", by_alias=True, exclude_none=True)).encode()
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            for rel, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)):
                info = tarfile.TarInfo(rel)
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
            for d in sorted(wanted):
                tf.add(store.blob_path(d), arcname=f"blobs/sha256/{digests.hex_of(d)}", recursive=False)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return [e.annotations[oci.REF_NAME] for e in entries if e.annotations]


def import_rootfs(images: LocalImages, tarball: Path, ref: str, platform: ImagePlatform | None = None) -> str:
    """A one-layer image from a rootfs tarball (plain or gzip), like `docker import`; returns its name."""
    store = images.store
    name = references.parse(ref).familiar()
    platform = platform or host_platform()
    with Path(tarball).open("rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    with store.content_lock(), tempfile.TemporaryDirectory(dir=store.ingest_dir) as tmp:
        h = hashlib.sha256()
        raw = gzip.open(tarball, "rb") if compressed else Path(tarball).open("rb")
        layer_path = Path(tmp) / "layer.tar.gz"
        with raw, layer_path.open("wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:
            while chunk := raw.read(1 << 20):
                h.update(chunk)
                gz.write(chunk)
        try:
            with tarfile.open(tarball, "r:*") as check:
                check.next()
        except tarfile.TarError as err:
            raise UsageError(f"{tarball} is not a tar archive: {err}") from None
        layer, size = store.put_file(layer_path)
        config = oci.dump(oci.ImageConfig(
            architecture=platform.architecture, os=platform.os, variant=platform.variant,
            rootfs=oci.RootFS(diff_ids=["sha256:" + h.hexdigest()]),
            history=[{"created_by": f"hostrt import {Path(tarball).name}"}],
        ))
        manifest = oci.dump(oci.Manifest(
            mediaType=oci.OCI_MANIFEST,
            config=oci.Descriptor(mediaType=oci.OCI_CONFIG, digest=store.put_bytes(config), size=len(config)),
            layers=[oci.Descriptor(mediaType=oci.OCI_LAYER_GZIP, digest=layer, size=size)],
        ))
        store.set_name(name, oci.Descriptor(mediaType=oci.OCI_MANIFEST, digest=store.put_bytes(manifest), size=len(manifest)))
    return name
