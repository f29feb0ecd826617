"""`hostrt bench compare`: parses flags and prints; the measurements live in hostrt.bench."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

bench_app = typer.Typer(rich_markup_mode=None, help="Measure hostrt on this host.", no_args_is_help=True)


class CompareFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


@bench_app.command("compare")
def compare(
    image: Annotated[str, typer.Argument(help="Image to measure (it needs sh and dd, as busybox has).")] = "busybox",
    output: Annotated[CompareFormat, typer.Option("--format", help="table, json or markdown.")] = CompareFormat.table,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw each row as a bar chart into this PNG "
                                                 "(needs the plot extra: pip install 'hostrt[plot]').")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="One round and small sizes: a first look in a few minutes.")] = False,
    budget: Annotated[Optional[str], typer.Option("--budget", help="Memory budget for the density row, e.g. 8g "
                                                  "(default: this host's RAM).")] = None,
) -> None:
    """VM versus container, measured now on this host for one image: memory, start, density,
    image size, data sharing, efficiency. Runs in a scratch root: your containers and machines are untouched."""
    from hostrt.bench.compare import Bench
    from hostrt.bench.rows import Params
    from hostrt.bench.report import as_json, markdown, table
    from hostrt.engine.options import parse_memory
    from hostrt.errors import BackendUnavailableError
    from hostrt.paths import Paths

    if plot is not None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:  # before minutes of measuring, not after
            raise BackendUnavailableError("--plot needs matplotlib: pip install 'hostrt[plot]'")
    budget_mib = parse_memory(budget, "--budget") // (1024 * 1024) if budget else None
    comparison, samples = Bench(image, Params.make(quick, budget_mib), Paths.default()).run()
    if plot is not None:
        from hostrt.bench.report import plot as draw

        draw(comparison, plot)
    if output is CompareFormat.json:
        typer.echo(as_json(comparison, samples))
    elif output is CompareFormat.markdown:
        typer.echo(markdown(comparison))
    else:
        typer.echo(table(comparison))
