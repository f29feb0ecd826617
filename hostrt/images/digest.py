"""sha256 digests: validation and hashing, the one currency between store, unpack and registry."""

from __future__ import annotations

import hashlib
import re

from hostrt.images.errors import DigestMismatchError, InvalidReferenceError

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def validate(digest: str) -> str:
    """Return `digest` if it is a well-formed sha256 digest; the store holds nothing else."""
    if not _DIGEST.match(digest):
        raise InvalidReferenceError(f"invalid digest {digest!r}: expected sha256:<64 lowercase hex digits>")
    return digest


def hex_of(digest: str) -> str:
    """The hex part of a digest (the blob's file name)."""
    return validate(digest).split(":", 1)[1]


def of_bytes(data: bytes) -> str:
    """The digest of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_bytes(data: bytes, digest: str, what: str = "content") -> None:
    """Raise if `data` does not hash to `digest`."""
    actual = of_bytes(data)
    if actual != digest:
        raise DigestMismatchError(f"{what} has digest {actual}, expected {digest}")
