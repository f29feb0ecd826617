"""From an image reference and run options to a created container (record + bundle).

The image is found in (or pulled into) the store, the backend is chosen for its platform,
and the bundle prepared. A failure at any step removes what was made: no record, mount or
upper directory is left behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostrt.engine import failpoints
from hostrt.engine.containers import Engine
from hostrt.engine.options import RunOptions
from hostrt.engine.records import ContainerRecord
from hostrt.errors import UsageError
from hostrt.platform import BackendName, Decision, ImagePlatform, decide, detect_host

PULL_POLICIES = ("missing", "always", "never")


@dataclass(frozen=True)
class CreateRequest:
    image: str
    options: RunOptions
    platform: str | None = None
    backend: BackendName | None = None
    pull: str = "missing"
    auto_remove: bool = False


def _ensure_image(engine: Engine, request: CreateRequest, wanted: ImagePlatform | None):  # noqa: ANN202
    """The image's details, pulling it first when the pull policy says so."""
    from hostrt.images.errors import ImageNotFoundError
    from hostrt.images.local import LocalImages, details

    if request.pull not in PULL_POLICIES:
        raise UsageError(f"invalid --pull value {request.pull!r}: expected missing, always or never")
    if wanted is not None:
        decide(detect_host(), wanted, request.backend)  # a platform nothing can run fails before any pull
    images = LocalImages.open(engine.paths)
    if request.pull != "always":
        try:
            return images, details(images.store, request.image, wanted)
        except ImageNotFoundError:
            if request.pull == "never":
                raise
    from hostrt.images.pull import pull

    pull(images, request.image, wanted)
    return images, details(images.store, request.image, wanted)


def explain(engine: Engine, request: CreateRequest) -> tuple[str, Decision]:
    """The image's platform and the backend decision for it, without creating anything."""
    wanted = ImagePlatform.parse(request.platform) if request.platform else None
    _, image = _ensure_image(engine, request, wanted)
    return image.platform, decide(detect_host(), ImagePlatform.parse(image.platform), request.backend)


def create_container(engine: Engine, request: CreateRequest) -> ContainerRecord:
    wanted = ImagePlatform.parse(request.platform) if request.platform else None
    images, image = _ensure_image(engine, request, wanted)
    host = detect_host()
    image_platform = ImagePlatform.parse(image.platform)
    decision = decide(host, image_platform, request.backend)
    machine = None
    if decision.backend == "lightvm":
        from backends.lightvm.vm_backend import machine_name

        machine = machine_name(host.architecture, image_platform.architecture)
    record = engine.records.create({
        "name": request.options.name, "image": image.name, "image_digest": image.manifest_digest,
        "platform": image.platform, "backend": decision.backend, "machine": machine, "options": request.options,
        "stop_signal": image.config.get("StopSignal") or "SIGTERM", "auto_remove": request.auto_remove,
    })
    failpoints.reached("after-record")
    try:
        lower_dirs = [images.layers.ensure(images.store, layer.digest, layer.mediaType, layer.diff_id)
                      for layer in image.layers]
        record.args = engine.backend(record).prepare(record, image, lower_dirs)
        engine.records.save(record)
    except BaseException:
        engine.remove(record, force=True)
        raise
    return record
