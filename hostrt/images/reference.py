"""Image references, parsed and normalised the way docker does.

`busybox` is `docker.io/library/busybox:latest`; `host:5000/team/app:v1` names a registry
by its first component (it has a dot or a port, or is `localhost`); `repo@sha256:...`
pins content. The familiar form (`busybox:latest`) is what users see and what the store
records as the image name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hostrt.images.digest import validate as validate_digest
from hostrt.images.errors import InvalidReferenceError

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_DOMAINS = {"index.docker.io", "registry-1.docker.io"}
_MAX_NAME = 255

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DOMAIN = re.compile(
    r"^(?:localhost|\[[0-9a-fA-F:]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]+)?$"
)


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: registry domain, repository path, tag and/or digest."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """`domain/path`, the fully qualified repository."""
        return f"{self.domain}/{self.path}"

    @property
    def registry_host(self) -> str:
        """The host:port to talk to (docker.io's API lives elsewhere)."""
        return "registry-1.docker.io" if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def familiar_repository(self) -> str:
        """The repository as docker prints it: no docker.io/, no library/."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        return self.path.removeprefix("library/")

    @property
    def target(self) -> str:
        """What the registry's manifest endpoint takes: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def familiar(self) -> str:
        """`busybox:latest`, `127.0.0.1:5000/app@sha256:...`: the store's name for this reference."""
        if self.digest:
            return f"{self.familiar_repository}@{self.digest}"
        return f"{self.familiar_repository}:{self.tag or DEFAULT_TAG}"

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.domain, self.path, tag=tag, digest=None)

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.domain, self.path, tag=None, digest=digest)

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or DEFAULT_TAG}"


def _looks_like_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


def parse(text: str) -> Reference:
    """Parse a reference; raise `InvalidReferenceError` naming what is wrong."""
    original = text
    if not text or text != text.strip():
        raise InvalidReferenceError(f"invalid reference {original!r}: empty or surrounded by spaces")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not digest.startswith("sha256:"):
            raise InvalidReferenceError(f"invalid reference {original!r}: only sha256 digests are supported")
        try:
            validate_digest(digest)
        except InvalidReferenceError:
            raise InvalidReferenceError(f"invalid reference {original!r}: malformed digest {digest!r}") from None
    tag = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReferenceError(f"invalid reference {original!r}: invalid tag {tag!r}")
    if not text:
        raise InvalidReferenceError(f"invalid reference {original!r}: no repository name")
    parts = text.split("/")
    if len(parts) > 1 and _looks_like_domain(parts[0]):
        domain, path_parts = parts[0], parts[1:]
        if not _DOMAIN.match(domain):
            raise InvalidReferenceError(f"invalid reference {original!r}: invalid registry {domain!r}")
        if domain in _LEGACY_DOMAINS:
            domain = DEFAULT_DOMAIN
    else:
        domain, path_parts = DEFAULT_DOMAIN, parts
    for component in path_parts:
        if not _COMPONENT.match(component):
            hint = " (repository names must be lowercase)" if component.lower() != component else ""
            raise InvalidReferenceError(f"invalid reference {original!r}: invalid name component {component!r}{hint}")
    if domain == DEFAULT_DOMAIN and len(path_parts) == 1:
        path_parts = ["library", *path_parts]
    path = "/".join(path_parts)
    if len(domain) + 1 + len(path) > _MAX_NAME:
        raise InvalidReferenceError(f"invalid reference {original!r}: repository name longer than {_MAX_NAME}")
    if digest is not None:
        tag = None  # the digest pins the content; docker ignores a tag beside it too
    elif tag is None:
        tag = DEFAULT_TAG
    return Reference(domain=domain, path=path, tag=tag, digest=digest)
