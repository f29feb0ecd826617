"""The `hostrt` command line (typer): parses options and prints results; the work lives elsewhere.

Heavy modules (requests, paramiko, libvirt) are imported inside the commands that need
them, never here: this module is on the path of every command.
"""

from __future__ import annotations

import functools
import json
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import click

from hostrt import __version__

app = typer.Typer(rich_markup_mode=None, 
    name="hostrt",
    help="Run Linux container images anywhere: natively where the host can, in a light VM where it cannot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"hostrt version {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool, typer.Option("--version", "-v", callback=_show_version, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Options that apply to every command (--debug is read by the entry point)."""


@app.command()
def info(
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="text or json.")] = OutputFormat.text,
) -> None:
    """Show this host's facts and which backends can run containers here (and why not)."""
    from hostrt.info import gather_info, render_text

    report = gather_info()
    if output is OutputFormat.json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        typer.echo(render_text(report))


def _register_groups() -> None:
    """Command groups live in their own modules; each registers its commands on the app."""
    from hostrt.cli_containers import register as register_container_commands
    from hostrt.cli_images import register as register_image_commands
    from hostrt.cli_machine import machine_app

    register_container_commands(app)
    register_image_commands(app)
    app.add_typer(machine_app, name="machine")
    __import__("hostrt.cli_network").cli_network.register(app)
    __import__("hostrt.cli_matrix").cli_matrix.register(app)
    app.add_typer(__import__("hostrt.cli_bench").cli_bench.bench_app, name="bench")


_register_groups()


@functools.cache
def click_app() -> "click.Command":
    """The click command tree typer derives from `app`. Deriving it reads every command's
    signature and annotations (about 90 ms); the engine server derives it once, before it
    forks a worker per command."""
    return typer.main.get_command(app)
