"""Assemble images in the store: a config and manifest per platform, an index over them, a name.

Used by every producer of images (recipes, the guest VM image); knows the store and OCI
documents only.
"""

from __future__ import annotations

from hostrt.images import oci
from hostrt.images.store import ContentStore


def store_manifest(store: ContentStore, config: oci.ImageConfig, layers: list[tuple[str, int]]) -> oci.Descriptor:
    """Store a config and an OCI manifest over gzip layers; the manifest's descriptor, with its platform."""
    config_bytes = oci.dump(config)
    config_digest = store.put_bytes(config_bytes)
    manifest = oci.Manifest(
        schemaVersion=2,
        mediaType=oci.OCI_MANIFEST,
        config=oci.Descriptor(mediaType=oci.OCI_CONFIG, digest=config_digest, size=len(config_bytes)),
        layers=[oci.Descriptor(mediaType=oci.OCI_LAYER_GZIP, digest=digest, size=size) for digest, size in layers],
    )
    manifest_bytes = oci.dump(manifest)
    return oci.Descriptor(
        mediaType=oci.OCI_MANIFEST,
        digest=store.put_bytes(manifest_bytes),
        size=len(manifest_bytes),
        platform=oci.Platform(os=config.os, architecture=config.architecture, variant=config.variant),
    )


def store_index(store: ContentStore, name: str, manifests: list[oci.Descriptor]) -> oci.Descriptor:
    """Store an index of per-platform manifests and give it `name`."""
    index_bytes = oci.dump(oci.Index(schemaVersion=2, mediaType=oci.OCI_INDEX, manifests=manifests))
    index = oci.Descriptor(mediaType=oci.OCI_INDEX, digest=store.put_bytes(index_bytes), size=len(index_bytes))
    store.set_name(name, index)
    return index
