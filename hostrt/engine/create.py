"""From an image reference and run options to a created container (record + bundle).

The image is found in (or pulled into) the store, the backend is chosen for its platform,
and the bundle prepared. A failure at any step removes what was made: no record, mount or
upper directory is left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostrt.engine import failpoints
from hostrt.engine.containers import Engine
from hostrt.errors import UsageError

if TYPE_CHECKING:  # pydantic models: the fast run path (cli_fast.py) reaches here without them
    from hostrt.engine.options import RunOptions
    from hostrt.engine.records import ContainerRecord
    from hostrt.platform import BackendName, Decision, ImagePlatform

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
    from hostrt.platform import decide, detect_host

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
    from hostrt.platform import ImagePlatform, decide, detect_host

    wanted = ImagePlatform.parse(request.platform) if request.platform else None
    _, image = _ensure_image(engine, request, wanted)
    return image.platform, decide(detect_host(), ImagePlatform.parse(image.platform), request.backend)


def create_container(engine: Engine, request: CreateRequest) -> ContainerRecord:
    from hostrt.engine import run_cache
    from hostrt.platform import ImagePlatform, decide, detect_host

    wanted = ImagePlatform.parse(request.platform) if request.platform else None
    index_stamp = run_cache.index_stamp(engine.paths)  # before resolving: a later retag invalidates the entry
    images, image = _ensure_image(engine, request, wanted)
    host = detect_host()
    image_platform = ImagePlatform.parse(image.platform)
    decision = decide(host, image_platform, request.backend)
    machine = None
    if decision.backend == "lightvm":
        from backends.lightvm.vm_backend import machine_name

        machine = machine_name(host.architecture, image_platform.architecture)
    fields = {
        "name": request.options.name, "image": image.name, "image_digest": image.manifest_digest,
        "platform": image.platform, "backend": decision.backend, "machine": machine, "options": request.options,
        "stop_signal": image.config.get("StopSignal") or "SIGTERM", "auto_remove": request.auto_remove,
    }

    def lower_dirs() -> list[Path]:
        dirs = [images.layers.ensure(images.store, layer.digest, layer.mediaType, layer.diff_id)
                for layer in image.layers]
        if decision.backend == "native" and request.platform is None and request.backend is None:
            run_cache.remember(engine.paths, index_stamp, request.image, fields, image.config, dirs)
        return dirs

    return make_container(engine, fields, image, lower_dirs)


def make_container(engine: Engine, fields: dict[str, Any], image: Any,
                   lower_dirs: Callable[[], list[Path]]) -> ContainerRecord:
    """Write the record, then prepare the bundle; a failure at any step removes what was made.
    Shared by the typer CLI and the fast path: `image` needs what the backend's `prepare` reads."""
    record = engine.records.create(dict(fields))
    failpoints.reached("after-record")
    try:
        record.args = engine.backend(record).prepare(record, image, lower_dirs())
        engine.records.save(record)
    except BaseException:
        engine.remove(record, force=True)
        raise
    return record


def start_created(engine: Engine, record: ContainerRecord, detach: bool, interactive: bool) -> int:
    """`run` after create: detached (print the ID) or attached (the container's exit code)."""
    if detach:
        try:
            engine.start_detached(record)
        except BaseException:
            if record.auto_remove:
                engine.remove(record, force=True)
            raise
        print(record.id, flush=True)
        return 0
    return engine.run_attached(record, interactive)
