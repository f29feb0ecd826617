"""The cells of a matrix: which platform on which backend, with which command, and whether
this host can run each one (a cell it cannot run is kept, marked skipped, with the reason).

Cells come from `--platform`/`--backend` lists (their cross product) or from a file
(`--file matrix.yaml`) that lists them with a command each, for a repository's tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Union

from pydantic import BaseModel, Field, ValidationError, field_validator

from hostrt.errors import BackendUnavailableError, UnsupportedPlatformError, UsageError, first_validation_error
from hostrt.platform import HostInfo, ImagePlatform, decide

BackendChoice = Literal["auto", "native", "lightvm"]
Command = Union[str, list[str]]


def as_argv(command: Command | None) -> list[str]:
    """A list is the argv; a string is a shell line (`sh -c`), as CI files usually write tests."""
    if command is None:
        return []
    return ["sh", "-c", command] if isinstance(command, str) else list(command)


class CellSpec(BaseModel):
    """One cell as asked for; `command`, `env`, `volumes` override or extend the matrix's."""

    platform: str
    backend: BackendChoice = "auto"
    name: str | None = None
    command: Command | None = None
    env: list[str] = Field(default_factory=list)
    volumes: list[str] = Field(default_factory=list)

    @field_validator("platform")
    @classmethod
    def _platform(cls, text: str) -> str:
        return str(ImagePlatform.parse(text))


class MatrixSpec(BaseModel):
    """A whole matrix: the image, what every cell runs, and the cells."""

    image: str
    command: Command | None = None
    env: list[str] = Field(default_factory=list)
    volumes: list[str] = Field(default_factory=list)
    workdir: str | None = None
    network: str | None = None
    cells: list[CellSpec] = Field(min_length=1)


class Cell(BaseModel):
    """A planned cell: what runs, where, and (for a VM) in which machine; or why it cannot."""

    name: str
    platform: str
    backend: str  # native, lightvm, or the asked one when skipped
    accelerator: str | None = None
    lane: str  # cells in one lane run one after another (they share a machine)
    argv: list[str]  # the `hostrt run` arguments after `run`
    skip_reason: str | None = None


def cross_product(image: str, command: list[str], platforms: list[str], backends: list[str]) -> MatrixSpec:
    """`--platform a,b --backend x,y`: every platform on every backend, in that order."""
    for backend in backends:
        if backend not in ("auto", "native", "lightvm"):
            raise UsageError(f"invalid --backend value {backend!r}: expected native, lightvm or auto")
    cells = [CellSpec(platform=p, backend=b) for p in platforms for b in backends]  # type: ignore[arg-type]
    return MatrixSpec(image=image, command=command or None, cells=cells)


def load_file(path: Path) -> MatrixSpec:
    """Read a matrix file (YAML, or JSON which YAML includes); relative volume sources are
    taken from the file's directory, so `volumes: [".:/src"]` mounts the repository it sits in."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise UsageError(f"cannot read matrix file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UsageError(f"matrix file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    try:
        spec = MatrixSpec.model_validate(data)
    except ValidationError as err:
        raise UsageError(f"matrix file {path}: {first_validation_error(err)}") from None
    base = path.resolve().parent

    def absolute(volumes: list[str]) -> list[str]:
        resolved = []
        for volume in volumes:
            source, sep, rest = volume.partition(":")
            resolved.append(volume if source.startswith("/") else f"{(base / source).resolve()}{sep}{rest}")
        return resolved

    spec.volumes = absolute(spec.volumes)
    for cell in spec.cells:
        cell.volumes = absolute(cell.volumes)
    return spec


def _cell_name(platform: str, backend: str) -> str:
    arch = platform.split("/", 1)[1].replace("/", "-")
    return f"{arch}-{ {'native': 'native', 'lightvm': 'vm'}.get(backend, backend)}"


def plan(spec: MatrixSpec, host: HostInfo) -> list[Cell]:
    """Decide each cell's backend as `run` would; a cell this host cannot run is skipped, not failed."""
    from backends.lightvm.vm_backend import machine_name

    planned: list[Cell] = []
    for index, cell in enumerate(spec.cells):
        override = None if cell.backend == "auto" else cell.backend
        image_platform = ImagePlatform.parse(cell.platform)
        argv = ["--rm", "--platform", cell.platform]
        if spec.network:
            argv += ["--network", spec.network]
        if spec.workdir:
            argv += ["--workdir", spec.workdir]
        for item in [*spec.env, *cell.env]:
            argv += ["--env", item]
        for volume in [*spec.volumes, *cell.volumes]:
            argv += ["--volume", volume]
        command = as_argv(cell.command if cell.command is not None else spec.command)
        try:
            decision = decide(host, image_platform, override)  # type: ignore[arg-type]
        except (BackendUnavailableError, UnsupportedPlatformError) as err:
            name = cell.name or _cell_name(cell.platform, cell.backend)
            planned.append(Cell(name=name, platform=cell.platform, backend=cell.backend, lane=f"skip{index}",
                                argv=[], skip_reason=str(err)))
            continue
        lane = (machine_name(host.architecture, image_platform.architecture) if decision.backend == "lightvm"
                else f"native{index}")
        planned.append(Cell(
            name=cell.name or _cell_name(cell.platform, decision.backend),
            platform=cell.platform, backend=decision.backend,
            accelerator=decision.accelerator if decision.backend == "lightvm" else "none",
            lane=lane, argv=[*argv, "--backend", decision.backend, spec.image, *command],
        ))
    names = [c.name for c in planned]
    for cell in planned:  # two cells with one name (the same platform twice): number them
        if names.count(cell.name) > 1:
            cell.name = f"{cell.name}-{planned.index(cell) + 1}"
    return planned
