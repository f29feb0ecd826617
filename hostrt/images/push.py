"""Push: copy a stored image (every platform of an index that is stored) to a registry.

Blobs first, then each platform's manifest by digest, then the top document under the tag:
the registry refuses a manifest whose blobs it does not have.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hostrt.images import oci
from hostrt.images import reference as references
from hostrt.images.auth import find_credentials
from hostrt.images.errors import ImageNotFoundError
from hostrt.images.local import LocalImages, resolve
from hostrt.images.progress import SILENT, Progress
from hostrt.images.registry import Registry
from hostrt.images.store import ContentStore


@dataclass(frozen=True)
class PushResult:
    source: str
    reference: str
    digest: str
    uploaded: int
    skipped: int
    mounted: int = 0


def _source(store: ContentStore, source: str, destination: str | None) -> tuple[str, oci.Descriptor]:
    """The local image to push. `push host:5000/busybox` with only `busybox:latest` stored pushes
    that one: the destination names a registry, the local image the same repository and tag."""
    try:
        return resolve(store, source)
    except ImageNotFoundError:
        ref = references.parse(source)
        if destination is not None or ref.domain == references.DEFAULT_DOMAIN or ref.digest:
            raise
        local = references.parse(f"{ref.path}:{ref.tag}")
        try:
            return resolve(store, local.familiar())
        except ImageNotFoundError:
            raise ImageNotFoundError(f"no such image: {source} (nor {local.familiar()}) to push") from None


def push(
    images: LocalImages,
    source: str,
    destination: str | None = None,
    *,
    insecure: Iterable[str] = (),
    progress: Progress = SILENT,
    chunk_size: int | None = None,
    registry: Registry | None = None,
) -> PushResult:
    store = images.store
    name, top = _source(store, source, destination)
    dest = references.parse(destination or source)
    reg = registry or Registry(dest.registry_host, find_credentials(dest.registry_host), insecure)
    manifests = [top]
    if top.mediaType in oci.INDEX_TYPES:
        manifests = oci.parse_index(store.read(top.digest)).manifests
        missing = [str(d.platform.as_image_platform()) if d.platform else d.digest for d in manifests if not store.has(d.digest)]
        if missing:
            raise ImageNotFoundError(
                f"cannot push {name}: its index names images that were not pulled ({', '.join(missing)}); "
                "pull them with --platform, or push one platform by its manifest digest"
            )
    source_ref = references.parse(name)
    # Same registry, another repository: ask it to mount the blobs instead of uploading them again.
    mount_from = source_ref.path if source_ref.domain == dest.domain and source_ref.path != dest.path else None
    uploaded = skipped = mounted = 0
    for mdesc in manifests:
        mdata = store.read(mdesc.digest)
        manifest = oci.parse_manifest(mdata)
        for blob in [manifest.config, *manifest.layers]:
            outcome = reg.push_blob(
                dest.path, blob.digest, blob.size, lambda b=blob: store.open_blob(b.digest), progress, chunk_size,
                mount_from,
            )
            progress.finish(blob.digest, outcome)
            uploaded += outcome == "pushed"
            skipped += outcome == "exists"
            mounted += outcome == "mounted"
        if mdesc is not top:
            reg.put_manifest(dest.path, mdesc.digest, mdata, mdesc.mediaType)
    digest = reg.put_manifest(dest.path, dest.target, store.read(top.digest), top.mediaType)
    return PushResult(source=name, reference=str(dest), digest=digest, uploaded=uploaded, skipped=skipped, mounted=mounted)
