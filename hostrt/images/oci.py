"""OCI and Docker schema2 documents as typed models, and platform matching.

Registries and archives speak two dialects (OCI, Docker schema2) that differ only in media
types; the models accept both and keep unknown fields so a re-serialised document is not
needed: the store always keeps the original bytes, whose digest is the identity.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hostrt.errors import first_validation_error
from hostrt.images.errors import DigestMismatchError
from hostrt.platform import ImagePlatform, normalise_arch

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))

# Layer media type -> compression, the only thing unpack needs to know about a layer.
LAYER_COMPRESSION: dict[str, str] = {
    OCI_LAYER: "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    OCI_LAYER_GZIP: "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_FOREIGN_LAYER: "gzip",
    OCI_LAYER_ZSTD: "zstd",
}

REF_NAME = "org.opencontainers.image.ref.name"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Platform(_Doc):
    """A descriptor's platform as an index carries it."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = Field(default=None, alias="os.version")

    def as_image_platform(self) -> ImagePlatform:
        return platform_of(self.os, self.architecture, self.variant)


class Descriptor(_Doc):
    """A pointer to content: media type, digest, size (and for index entries, a platform)."""

    mediaType: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] | None = None
    urls: list[str] | None = None


class Manifest(_Doc):
    """One image: a config blob and its layers (OCI manifest or Docker schema2)."""

    schemaVersion: int = 2
    mediaType: str | None = None
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] | None = None


class Index(_Doc):
    """Several images, one per platform (OCI index or Docker manifest list)."""

    schemaVersion: int = 2
    mediaType: str | None = None
    manifests: list[Descriptor]
    annotations: dict[str, str] | None = None


class RootFS(_Doc):
    type: str = "layers"
    diff_ids: list[str] = []


class ImageConfig(_Doc):
    """The image configuration blob: platform, run defaults (config), and layer diff ids."""

    architecture: str = ""
    os: str = ""
    variant: str | None = None
    created: str | None = None
    config: dict[str, Any] = {}
    rootfs: RootFS = RootFS()
    history: list[dict[str, Any]] = []

    def image_platform(self) -> ImagePlatform:
        return platform_of(self.os, self.architecture, self.variant)


def platform_of(os_name: str, architecture: str, variant: str | None) -> ImagePlatform:
    """An ImagePlatform with the same spelling rules as `--platform` (arm64/v8 is arm64)."""
    arch, implied = normalise_arch(architecture)
    variant = variant or implied
    if arch == "arm64" and variant == "v8":
        variant = None
    return ImagePlatform(os=os_name, architecture=arch, variant=variant)


def platform_matches(wanted: ImagePlatform, offered: ImagePlatform) -> bool:
    """Does an index entry for `offered` satisfy a request for `wanted`? (no variant asked: any)."""
    if wanted.os != offered.os or wanted.architecture != offered.architecture:
        return False
    return wanted.variant is None or wanted.variant == offered.variant


def media_type_of(data: bytes, declared: str | None = None) -> str:
    """The media type of a manifest document: its own field, else what the transport said, else the shape."""
    try:
        doc = json.loads(data)
    except ValueError as err:
        raise DigestMismatchError(f"manifest is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise DigestMismatchError("manifest is not a JSON object")
    if doc.get("mediaType"):
        return str(doc["mediaType"])
    if declared and declared in (*MANIFEST_TYPES, *INDEX_TYPES):
        return declared
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def parse_manifest(data: bytes) -> Manifest:
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as err:
        raise DigestMismatchError(f"malformed image manifest: {first_validation_error(err)}") from None


def parse_index(data: bytes) -> Index:
    try:
        return Index.model_validate_json(data)
    except ValidationError as err:
        raise DigestMismatchError(f"malformed image index: {first_validation_error(err)}") from None


def parse_config(data: bytes) -> ImageConfig:
    try:
        return ImageConfig.model_validate_json(data)
    except ValidationError as err:
        raise DigestMismatchError(f"malformed image config: {first_validation_error(err)}") from None


def dump(doc: BaseModel) -> bytes:
    """Serialise a document we create (canonical enough: compact, no None fields)."""
    return json.dumps(doc.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":")).encode()
