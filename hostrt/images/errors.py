"""Errors of the image rooms; each names the reference, digest or tar entry that is wrong."""

from __future__ import annotations

from hostrt.errors import HostrtError, NotFoundError, UsageError


class InvalidReferenceError(UsageError):
    """An image reference that docker would not accept either."""


class ImageNotFoundError(NotFoundError):
    """No image of that name in the local store (or the registry)."""


class DigestMismatchError(HostrtError):
    """Content whose sha256 or size is not what its descriptor promised: never stored."""


class UnpackError(HostrtError):
    """A layer could not be unpacked (corrupt stream, disk full); the message names the entry."""


class UnsafeLayerError(UnpackError):
    """A layer tar entry that would write outside its layer directory, or is otherwise malformed."""


class RegistryError(HostrtError):
    """The registry refused or failed a request (the message carries its status and error code)."""


class AuthError(RegistryError):
    """The registry wants credentials we do not have, or rejected the ones we sent."""


class RecipeError(HostrtError):
    """An image recipe that cannot be built (bad recipe.toml, a package that cannot be fetched)."""
