"""Pull: copy one image (one platform of an index) from a registry into the content store.

Blobs are verified into the ingest area and published together only when all passed; then
the manifest, the index, and last the name. So a failed or interrupted pull adds nothing
visible, and a name never points at something incomplete. Work done is kept in ingest for
the next pull (partial downloads resume with Range).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hostrt.images import oci
from hostrt.images import reference as references
from hostrt.images.auth import find_credentials
from hostrt.images.errors import DigestMismatchError, ImageNotFoundError
from hostrt.images.local import LocalImages, host_platform
from hostrt.images.progress import SILENT, Progress
from hostrt.images.registry import Registry
from hostrt.platform import ImagePlatform

PARALLEL_BLOBS = 4


@dataclass(frozen=True)
class PullResult:
    name: str
    digest: str  # what the name points at (the registry's digest for the reference)
    manifest_digest: str
    platform: str
    fetched: int  # blobs downloaded (0: everything was already here)


def choose(index: oci.Index, wanted: ImagePlatform, what: str) -> oci.Descriptor:
    """The index entry for a platform, or an error listing what the index offers."""
    for d in index.manifests:
        if d.platform and d.mediaType in oci.MANIFEST_TYPES and oci.platform_matches(wanted, d.platform.as_image_platform()):
            return d
    offered = ", ".join(str(d.platform.as_image_platform()) for d in index.manifests if d.platform) or "no platforms"
    raise ImageNotFoundError(f"{what} has no {wanted} image (it offers: {offered})")


def pull(
    images: LocalImages,
    ref_text: str,
    platform: ImagePlatform | None = None,
    *,
    insecure: Iterable[str] = (),
    progress: Progress = SILENT,
    registry: Registry | None = None,
) -> PullResult:
    ref = references.parse(ref_text)
    reg = registry or Registry(ref.registry_host, find_credentials(ref.registry_host), insecure)
    store = images.store
    data, media_type, digest = reg.get_manifest(ref.path, ref.target)
    wanted = platform or host_platform()
    with store.content_lock():
        top = oci.Descriptor(mediaType=media_type, digest=digest, size=len(data))
        if media_type in oci.INDEX_TYPES:
            chosen = choose(oci.parse_index(data), wanted, str(ref))
            mdata, _, mdigest = reg.get_manifest(ref.path, chosen.digest)
        elif media_type in oci.MANIFEST_TYPES:
            mdata, mdigest = data, digest
        else:
            raise ImageNotFoundError(f"{ref} is a {media_type}, not an image this client can pull")
        manifest = oci.parse_manifest(mdata)
        for layer in manifest.layers:
            if layer.mediaType not in oci.LAYER_COMPRESSION:
                raise ImageNotFoundError(f"{ref}: layer {layer.digest} has unsupported media type {layer.mediaType}")
        blobs = [manifest.config, *manifest.layers]

        def fetch(desc: oci.Descriptor) -> bool:
            for attempt in (1, 2):
                with store.writer(desc.digest, desc.size) as w:
                    if w is None:
                        return False
                    resumed = w.offset > 0
                    reg.fetch_blob(ref.path, desc, w, progress)
                    try:
                        w.commit(publish=False)
                    except DigestMismatchError:
                        if resumed and attempt == 1:
                            continue  # the kept partial was bad, not the registry: once more from zero
                        raise
                    progress.finish(desc.digest, "done")
                    return True
            return False

        fetched = fetch(manifest.config)  # first: a wrong platform must be refused before any layer comes
        config = oci.parse_config(store.read_pending(manifest.config.digest))
        got = config.image_platform()
        if platform is not None and not oci.platform_matches(platform, got):
            raise ImageNotFoundError(f"{ref} is a {got} image, not {platform}")
        with ThreadPoolExecutor(max_workers=PARALLEL_BLOBS) as pool:
            fetched += sum(pool.map(fetch, manifest.layers))
        for desc in blobs:  # all verified: now make them visible
            store.publish(desc.digest)
        store.put_bytes(mdata, mdigest)
        if top.digest != mdigest:
            store.put_bytes(data, digest)
        name = ref.familiar()
        store.set_name(name, top)
    return PullResult(name=name, digest=digest, manifest_digest=mdigest, platform=str(got), fetched=fetched)
