"""The released guest image: what a host that cannot build one (no apt-get, no dpkg-deb: macOS,
Windows) pulls on first use, pinned by digest.

A pull by digest is verified at every step (the index against the digest below, each manifest,
config and layer against the digests the index names), so a moved tag, a mirror or a
tampered registry can change where the bytes come from, never which bytes boot.

- `HOSTRT_GUEST_REGISTRY=HOST[:PORT]` fetches the same repository path and digest from another
  registry (a mirror, an air-gapped registry, a test's local one); the digest stays this file's.
- `HOSTRT_GUEST_IMAGE=REF` (or `machine init --image REF`) names a guest of the user's choice
  instead; `REF@sha256:...` is verified the same way, a tag alone is trusted as named.

REPOSITORY, DIGEST and the line that says where the digest comes from are written by
`ci/pin-guest`, which the release workflow (.github/workflows/release-guest.yml) runs after it
has built both architectures with `hostrt machine image build`, pushed the index with
`hostrt push` and pulled it back by digest; the workflow proposes the new file as a pull
request. Until a release is published under REPOSITORY (the comment above DIGEST says whether
it was), a pull of the default from there fails with a one-line error naming the two settings
above.
"""

from __future__ import annotations

import os

from hostrt.errors import UsageError

REPOSITORY = "ghcr.io/hostrt/guest"
# Pinned from: a build of images/guest on the development machine (no internet access); not published: the release workflow has not run.
DIGEST = "sha256:4aa7fd76a9566a45e9ed6948c9ec57658dbfe403d68a6339002e55d8ee1f4e0d"
REGISTRY_ENV = "HOSTRT_GUEST_REGISTRY"


def pinned_reference() -> str:
    """`REPOSITORY@DIGEST`, its registry replaced by $HOSTRT_GUEST_REGISTRY when that is set."""
    from hostrt.images import reference as references

    mirror = os.environ.get(REGISTRY_ENV, "").strip().rstrip("/")
    domain, path = REPOSITORY.split("/", 1)
    text = f"{mirror or domain}/{path}@{DIGEST}"
    if mirror and ("/" in mirror or references.parse(text).domain != mirror):
        raise UsageError(f"{REGISTRY_ENV} must be a registry HOST[:PORT], not {mirror!r}")
    return text
