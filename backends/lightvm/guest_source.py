"""Where a new machine's guest image comes from: a registry reference, or a local build.

Building needs Debian's apt-get and dpkg-deb; a macOS or Windows host has neither, so there
the guest is pulled instead: `machine init --image REF`, or `HOSTRT_GUEST_IMAGE=REF` for the
machines hostrt creates on first use. Without either, the error says which to set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from hostrt.errors import BackendUnavailableError

if TYPE_CHECKING:
    from backends.lightvm.guest_image import GuestImage
    from hostrt.paths import Paths

GUEST_IMAGE_ENV = "HOSTRT_GUEST_IMAGE"
BUILD_TOOLS = ("apt-get", "dpkg-deb")


def guest_for(paths: "Paths", arch: str, reference: str | None = None) -> "GuestImage":
    """The guest for `arch`: pulled from `reference` (or $HOSTRT_GUEST_IMAGE), else built here."""
    reference = reference or os.environ.get(GUEST_IMAGE_ENV) or None
    if reference:
        from backends.lightvm.guest_oci import guest_from_image
        from hostrt.images.local import LocalImages

        return guest_from_image(LocalImages.open(paths), reference, arch, paths.cache / "guest")
    missing = [tool for tool in BUILD_TOOLS if shutil.which(tool) is None]
    if missing:
        raise BackendUnavailableError(
            f"cannot build a guest image on this host ({' and '.join(missing)} not found): "
            f"set {GUEST_IMAGE_ENV}=REGISTRY/hostrt/guest:TAG or use machine init --image REF")
    from backends.lightvm.guest_image import build_guest_image

    return build_guest_image(arch, Path(paths.cache) / "guest")
