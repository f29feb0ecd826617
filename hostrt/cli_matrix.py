"""`hostrt matrix`: a CI matrix on one machine. Parses flags and prints; the work is in hostrt.matrix."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from hostrt.errors import UsageError


class MatrixFormat(str, Enum):
    table = "table"
    json = "json"
    junit = "junit"


def _split(values: list[str] | None) -> list[str]:
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


def _image_platforms(image: str) -> list[str]:
    """The platforms a local image offers (a multi-platform busybox: amd64 and arm64); the
    host's when the image is not here yet (the cell's run pulls it)."""
    from hostrt.images.errors import ImageNotFoundError
    from hostrt.images.local import LocalImages, details, host_platform

    try:
        return details(LocalImages.open().store, image).platforms
    except ImageNotFoundError:
        return [str(host_platform())]


def matrix(
    image: Annotated[Optional[str], typer.Argument(help="Image to run in every cell (or from --file).")] = None,
    command: Annotated[Optional[list[str]], typer.Argument(help="Command and arguments.")] = None,
    platform: Annotated[Optional[list[str]], typer.Option(
        "--platform", help="Comma-separated os/arch list (default: every platform the local image offers).")] = None,
    backend: Annotated[Optional[list[str]], typer.Option(
        "--backend", help="Comma-separated: native, lightvm, auto (default: auto, chosen per platform as run does).")] = None,
    output: Annotated[MatrixFormat, typer.Option("--format", help="table, json or junit.")] = MatrixFormat.table,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="A matrix file (YAML) listing cells and commands.")] = None,
    volume: Annotated[Optional[list[str]], typer.Option("--volume", "-v", help="HOSTPATH:CTRPATH[:ro] in every cell.")] = None,
    env: Annotated[Optional[list[str]], typer.Option("--env", "-e", help="KEY=VALUE in every cell.")] = None,
    workdir: Annotated[Optional[str], typer.Option("--workdir", "-w")] = None,
    network: Annotated[Optional[str], typer.Option("--network", help="As run --network (default: run's).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Cells run at once (default: CPU count); cells "
                                      "sharing a machine always run one after another.")] = 0,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds a cell may take.")] = 3600,
) -> int:
    """Run the same command in every cell (platform x backend), in parallel where possible, and
    print one table; exits 1 if any cell failed."""
    from hostrt.matrix.cells import cross_product, load_file, plan
    from hostrt.matrix.report import as_json, junit, table
    from hostrt.matrix.run import default_jobs, run_cells
    from hostrt.platform import detect_host

    if file is not None:
        if platform or backend:
            raise UsageError("--file lists its cells: do not combine it with --platform or --backend")
        spec = load_file(file)
        if image:
            spec.image = image
        if command:
            spec.command = list(command)
    else:
        if not image:
            raise UsageError("matrix needs an IMAGE (or --file matrix.yaml)")
        spec = cross_product(image, list(command or []), _split(platform) or _image_platforms(image),
                             _split(backend) or ["auto"])
    spec.volumes += volume or []
    spec.env += env or []
    spec.workdir = workdir or spec.workdir
    spec.network = network or spec.network
    cells = plan(spec, detect_host())
    if all(cell.skip_reason for cell in cells):
        raise UsageError("no cell of this matrix can run here: " + "; ".join(
            f"{c.name}: {c.skip_reason}" for c in cells))

    def progress(result) -> None:  # noqa: ANN001
        print(f"hostrt matrix: {result.cell.name}: {result.status}"
              + (f" (exit {result.exit_code}, {result.seconds:.1f} s)" if result.exit_code is not None else ""),
              file=sys.stderr, flush=True)

    results = run_cells(cells, jobs or default_jobs(), timeout, progress)
    if output is MatrixFormat.json:
        typer.echo(as_json(spec.image, results))
    elif output is MatrixFormat.junit:
        typer.echo(junit(spec.image, results))
    else:
        typer.echo(table(results))
    return 1 if any(r.status == "failed" for r in results) else 0


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_interspersed_args": False})(matrix)
