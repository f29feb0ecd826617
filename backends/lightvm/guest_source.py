"""Where a new machine's guest image comes from: a registry reference, or a local build.

In order: `machine init --image REF` or `HOSTRT_GUEST_IMAGE=REF` (the machines hostrt creates
on first use); else a build here, which needs Debian's apt-get and dpkg-deb; else, on a host
without them (macOS, Windows), the released guest pinned by digest in `guest_release.py`,
pulled from its registry or from `HOSTRT_GUEST_REGISTRY`, and verified.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from hostrt.errors import BackendUnavailableError, HostrtError

if TYPE_CHECKING:
    from backends.lightvm.guest_image import GuestImage
    from hostrt.paths import Paths

GUEST_IMAGE_ENV = "HOSTRT_GUEST_IMAGE"
BUILD_TOOLS = ("apt-get", "dpkg-deb")


def guest_for(paths: "Paths", arch: str, reference: str | None = None) -> "GuestImage":
    """The guest for `arch`: pulled from `reference` (or $HOSTRT_GUEST_IMAGE), else built here,
    else the pinned release pulled."""
    reference = reference or os.environ.get(GUEST_IMAGE_ENV) or None
    if reference:
        return _pulled(paths, arch, reference)
    missing = [tool for tool in BUILD_TOOLS if shutil.which(tool) is None]
    if missing:
        from backends.lightvm.guest_release import REGISTRY_ENV, pinned_reference

        pinned = pinned_reference()
        try:
            return _pulled(paths, arch, pinned)
        except HostrtError as err:
            raise BackendUnavailableError(
                f"cannot build a guest image here ({' and '.join(missing)} not found) nor get the released one "
                f"{pinned}: {str(err).splitlines()[0] if str(err) else type(err).__name__}; "
                f"set {REGISTRY_ENV}=MIRROR, {GUEST_IMAGE_ENV}=REF or use machine init --image REF") from None
    from backends.lightvm.guest_image import build_guest_image

    return build_guest_image(arch, Path(paths.cache) / "guest")


def _pulled(paths: "Paths", arch: str, reference: str) -> "GuestImage":
    from backends.lightvm.guest_oci import guest_from_image
    from hostrt.images.local import LocalImages

    return guest_from_image(LocalImages.open(paths), reference, arch, paths.cache / "guest")
