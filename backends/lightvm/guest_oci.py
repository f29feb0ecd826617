"""The guest VM image as an OCI image, so any registry can serve it.

A macOS or Windows host cannot run Debian's tools to build a guest, so it pulls one: an
index with one manifest per architecture, each with one gzip layer holding `vmlinuz`,
`initramfs.cpio` and the build's `manifest.json`. Pulled, the layer is unpacked like any
other, and the bootable kernel is derived from `vmlinuz` in pure Python (`boot_kernel`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from backends.lightvm.guest_image import GuestImage, GuestImageError, boot_kernel
from hostrt.images import oci
from hostrt.images.assemble import store_index, store_manifest
from hostrt.images.layer_tar import TarEntry, write_layer
from hostrt.images.local import LocalImages, details
from hostrt.platform import ImagePlatform

GUEST_FILES = ("vmlinuz", "initramfs.cpio", "manifest.json")
LABEL_RECIPE = "org.hostrt.guest.recipe"
LABEL_CONSOLE = "org.hostrt.guest.console"
DEFAULT_NAME = "hostrt/guest"


def store_guest_images(images: LocalImages, name: str, guests: list[GuestImage]) -> str:
    """Put built guests into the store as one multi-platform image named `name`."""
    manifests = []
    with images.store.content_lock(), tempfile.TemporaryDirectory(prefix="hostrt-guest-oci-") as scratch:
        for guest in guests:
            built = guest.initramfs.parent
            entries = [TarEntry(path=file, source=built / file, mode=0o644) for file in GUEST_FILES]
            layer, size, diff_id = write_layer(images.store, entries, 0, Path(scratch) / guest.arch)
            config = oci.ImageConfig(
                architecture=guest.arch, os="linux", variant="v8" if guest.arch == "arm64" else None,
                config={"Labels": {LABEL_RECIPE: guest.recipe_hash, LABEL_CONSOLE: guest.console}},
                rootfs=oci.RootFS(type="layers", diff_ids=[diff_id]),
            )
            manifests.append(store_manifest(images.store, config, [(layer, size)]))
        store_index(images.store, name, manifests)
    return name


def guest_from_image(images: LocalImages, reference: str, arch: str, cache_dir: Path) -> GuestImage:
    """The guest for `arch` from a stored (or else pulled) guest image; the kernel derived once.
    A `REF@sha256:...` is pinned: only an index of exactly that digest is used (the registry
    client verifies what it pulls by digest; this checks what the store resolved too)."""
    from hostrt.images import reference as references
    from hostrt.images.errors import DigestMismatchError, ImageNotFoundError

    wanted = ImagePlatform(os="linux", architecture=arch)
    pinned = references.parse(reference).digest
    fetched = None  # blobs fetched by a pull, None when the store had the image
    try:
        image = details(images.store, reference, wanted)
    except ImageNotFoundError:
        from hostrt.images.pull import pull

        pulled = pull(images, reference, wanted)
        if pinned and pulled.digest != pinned:  # pull() verifies by digest already: a second lock
            images.store.remove_name(pulled.name)
            raise DigestMismatchError(f"guest image {reference} has digest {pulled.digest}, pinned {pinned}: refused")
        image = details(images.store, reference, wanted)
        fetched = pulled.fetched
    if pinned and image.digest != pinned:
        raise DigestMismatchError(f"guest image {reference} resolves to {image.digest}, pinned {pinned}: refused")
    labels = image.config.get("Labels") or {}
    if LABEL_RECIPE not in labels or len(image.layers) != 1:
        raise GuestImageError(f"{reference} is not a hostrt guest image (no {LABEL_RECIPE} label)")
    layer = image.layers[0]
    unpacked = images.layers.ensure(images.store, layer.digest, layer.mediaType, layer.diff_id)
    if not all((unpacked / file).is_file() for file in GUEST_FILES):
        raise GuestImageError(f"{reference} lacks one of {', '.join(GUEST_FILES)}")
    if fetched is not None:  # said once the pulled image proved to be a guest
        print(f"hostrt: pulled guest image {reference} ({arch}, {fetched} blobs fetched"
              + (", index digest verified)" if pinned else ", not pinned by digest)"), file=sys.stderr)
    target = cache_dir / f"pulled-{arch}-{image.manifest_digest.split(':', 1)[1][:16]}"
    kernel = target / "kernel"
    if not kernel.exists():
        target.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".kernel-")
        with os.fdopen(fd, "wb") as out:
            out.write(boot_kernel(arch, (unpacked / "vmlinuz").read_bytes()))
        os.replace(tmp, kernel)
    return GuestImage(arch=arch, kernel=kernel, initramfs=unpacked / "initramfs.cpio",
                      recipe_hash=labels[LABEL_RECIPE], console=labels.get(LABEL_CONSOLE, "ttyS0"))
