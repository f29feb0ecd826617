"""The local images: names in the store resolved to a platform's manifest, config and layers.

Everything the commands `images`, `inspect`, `tag`, `rmi` and `image prune` need, and what
the engine asks before running an image. Names are stored in their familiar form.
"""

from __future__ import annotations

import platform as _stdlib_platform
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from hostrt.images import oci
from hostrt.images import reference as references
from hostrt.images.errors import ImageNotFoundError
from hostrt.images.layers import LayerDirs
from hostrt.images.store import ContentStore
from hostrt.paths import Paths
from hostrt.platform import ImagePlatform, normalise_arch


@dataclass(frozen=True)
class LocalImages:
    """The store and the unpacked layers of one hostrt root."""

    store: ContentStore
    layers: LayerDirs

    @classmethod
    def open(cls, paths: Paths | None = None) -> "LocalImages":
        paths = paths or Paths.default()
        return cls(ContentStore(paths.store).init(), LayerDirs(paths.layers))


class LayerInfo(BaseModel):
    digest: str
    mediaType: str
    size: int
    diff_id: str | None = None


class ImageDetails(BaseModel):
    """What `hostrt inspect` shows: one platform's image behind a name."""

    name: str
    digest: str  # what the name points at (index or manifest): the registry's digest
    media_type: str
    manifest_digest: str
    platform: str
    platforms: list[str]  # all platforms the index offers (one for a single manifest)
    created: str | None
    config_digest: str
    config: dict
    layers: list[LayerInfo]
    size: int


class ImageSummary(BaseModel):
    name: str
    digest: str
    platforms: list[str]
    size: int
    created: str | None


def host_platform() -> ImagePlatform:
    """The platform a container built for this machine has (Linux images, this CPU)."""
    arch, variant = normalise_arch(_stdlib_platform.machine())
    return ImagePlatform(os="linux", architecture=arch, variant=variant)


def name_of(text: str) -> str:
    """The store name for what a user typed (`busybox` -> `busybox:latest`)."""
    return references.parse(text).familiar()


def resolve(store: ContentStore, text: str) -> tuple[str, oci.Descriptor]:
    """Find an image by name, by `repo@digest`, or by a digest / unique digest prefix."""
    entries = store.names()
    candidate = text.removeprefix("sha256:")
    if 4 <= len(candidate) <= 64 and all(c in "0123456789abcdef" for c in candidate):
        hits = {d.digest: (n, d) for n, d in entries if d.digest.split(":", 1)[1].startswith(candidate)}
        if len(hits) == 1:
            return next(iter(hits.values()))
    name = name_of(text)
    for entry_name, desc in entries:
        if entry_name == name:
            return entry_name, desc
    ref = references.parse(text)
    if ref.digest:  # pulled by tag, asked for by digest
        for entry_name, desc in entries:
            if desc.digest == ref.digest and references.parse(entry_name).repository == ref.repository:
                return entry_name, desc
    raise ImageNotFoundError(f"no such image: {text}")


def _present_platforms(store: ContentStore, index: oci.Index) -> list[tuple[oci.Descriptor, ImagePlatform]]:
    return [
        (d, d.platform.as_image_platform())
        for d in index.manifests
        if d.platform is not None and d.mediaType in oci.MANIFEST_TYPES and store.has(d.digest)
    ]


def select_manifest(
    store: ContentStore, desc: oci.Descriptor, wanted: ImagePlatform | None = None, name: str = "image"
) -> oci.Descriptor:
    """The manifest for `wanted` (default: this host's platform, else the only one stored)."""
    if desc.mediaType in oci.MANIFEST_TYPES:
        return desc
    index = oci.parse_index(store.read(desc.digest))
    present = _present_platforms(store, index)
    choices = [wanted] if wanted else [host_platform()]
    for want in choices:
        for d, offered in present:
            if oci.platform_matches(want, offered):
                return d
    if wanted is None and len(present) >= 1:
        return present[0][0]
    offered = ", ".join(
        f"{d.platform.as_image_platform()}{'' if store.has(d.digest) else ' (not pulled)'}"
        for d in index.manifests
        if d.platform
    )
    raise ImageNotFoundError(f"{name} has no {wanted or host_platform()} image stored (it offers: {offered or 'nothing'})")


def details(store: ContentStore, text: str, wanted: ImagePlatform | None = None) -> ImageDetails:
    name, desc = resolve(store, text)
    mdesc = select_manifest(store, desc, wanted, name)
    manifest = oci.parse_manifest(store.read(mdesc.digest))
    config = oci.parse_config(store.read(manifest.config.digest))
    diff_ids = config.rootfs.diff_ids
    layers = [
        LayerInfo(digest=l.digest, mediaType=l.mediaType, size=l.size, diff_id=diff_ids[i] if i < len(diff_ids) else None)
        for i, l in enumerate(manifest.layers)
    ]
    if desc.mediaType in oci.INDEX_TYPES:
        index = oci.parse_index(store.read(desc.digest))
        platforms = [str(d.platform.as_image_platform()) for d in index.manifests if d.platform]
    else:
        platforms = [str(config.image_platform())]
    return ImageDetails(
        name=name,
        digest=desc.digest,
        media_type=desc.mediaType,
        manifest_digest=mdesc.digest,
        platform=str(config.image_platform()),
        platforms=platforms,
        created=config.created,
        config_digest=manifest.config.digest,
        config=config.config,
        layers=layers,
        size=manifest.config.size + sum(l.size for l in manifest.layers),
    )


def summaries(store: ContentStore) -> list[ImageSummary]:
    out = []
    for name, desc in store.names():
        if not name:
            continue
        size, created, platforms = 0, None, []
        try:
            manifests = [desc]
            if desc.mediaType in oci.INDEX_TYPES:
                manifests = [d for d, _ in _present_platforms(store, oci.parse_index(store.read(desc.digest)))]
            for mdesc in manifests:
                m = oci.parse_manifest(store.read(mdesc.digest))
                cfg = oci.parse_config(store.read(m.config.digest))
                platforms.append(str(cfg.image_platform()))
                created = created or cfg.created
                size += m.config.size + sum(l.size for l in m.layers)
        except ImageNotFoundError:
            platforms.append("(incomplete)")
        out.append(ImageSummary(name=name, digest=desc.digest, platforms=platforms, size=size, created=created))
    return sorted(out, key=lambda s: s.name)


def tag(store: ContentStore, source: str, target: str) -> str:
    _, desc = resolve(store, source)
    new_name = name_of(target)
    if references.parse(target).digest:
        raise ImageNotFoundError(f"cannot tag with a digest reference: {target}")
    store.set_name(new_name, desc)
    return new_name


def collect(images: LocalImages) -> tuple[list[str], list[str]]:
    """Remove blobs and unpacked layers no name reaches; returns (blobs, layer dirs) removed."""
    with images.store.content_lock(exclusive=True):
        blobs = images.store.collect_garbage()
        layers = images.layers.prune(images.store.reachable())
    return blobs, layers


def remove(images: LocalImages, text: str) -> tuple[str, list[str]]:
    """Untag an image and collect what only it used; returns its name and the removed blobs."""
    name, _ = resolve(images.store, text)
    images.store.remove_name(name)
    blobs, _ = collect(images)
    return name, blobs


def unpacked_layers(images: LocalImages, text: str, wanted: ImagePlatform | None = None) -> list[Path]:
    """The unpacked layer directories of an image, bottom layer first (overlayfs wants them reversed).

    Unpacks what is missing; each layer's diff id is checked against the image config.
    """
    d = details(images.store, text, wanted)
    return [images.layers.ensure(images.store, l.digest, l.mediaType, l.diff_id) for l in d.layers]
