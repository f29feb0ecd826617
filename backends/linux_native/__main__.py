"""`hostrt-runtime`: the runc-compatible command line (global flags as runc spells them)."""

from __future__ import annotations

import argparse
import sys

from backends.linux_native import OCI_VERSION, __version__

DEFAULT_ROOT = "/run/hostrt-runtime"


def build_parser() -> argparse.ArgumentParser:
    """The global flags containerd and runtime-tools pass before every command."""
    parser = argparse.ArgumentParser(prog="hostrt-runtime", description="runc-compatible OCI runtime")
    parser.add_argument("--version", "-v", action="version", version=f"hostrt-runtime version {__version__}\nspec: {OCI_VERSION}")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="directory for container state")
    parser.add_argument("--log", default=None, help="log file (errors as JSON lines for containerd)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--debug", action="store_true")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
