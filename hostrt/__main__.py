"""Entry point of the `hostrt` command: maps failures to one line and a Docker-style exit code."""

from __future__ import annotations

import os
import sys

from hostrt import __version__
from hostrt.errors import EXIT_HOSTRT, HostrtError

_EXIT_INTERRUPTED = 130


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("HOSTRT_DEBUG") not in (None, "", "0")


def _secure_roots() -> None:
    """Every command first makes sure other users cannot reach hostrt's data (one stat per root)."""
    from hostrt.paths import Paths
    from hostrt.private_dirs import secure

    try:
        secure(Paths.default())
    except OSError as err:
        raise HostrtError(f"cannot prepare hostrt's directories: {err}") from None


def _join_rootless(args: list[str]) -> str | None:
    """An ordinary user's command enters the user's rootless namespace first, while it is
    single-threaded (hostrt/rootless); the error printed if it cannot, else None. The VM
    commands stay outside: libvirt's session daemon must see the user as itself."""
    from hostrt import rootless

    if not rootless.wanted() or rootless.stays_outside(args):
        return None
    try:
        # Checked as the user, before joining: the holder's pid file lives in the run root, and
        # inside the namespace another user's files only show as the overflow uid.
        _secure_roots()
        rootless.enter()
    except HostrtError as err:
        message = f"hostrt: error: {err}"
    except rootless.RootlessError as err:
        message = f"hostrt: error: rootless: {err}"
    else:
        return None
    print(message, file=sys.stderr)
    return message


def _outside_rootless() -> bool:
    """An ordinary user's command that did not join: it must neither use nor start the
    engine server, which lives in the rootless namespace."""
    from hostrt import rootless

    return rootless.wanted()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; user mistakes never show a traceback unless --debug.
    From the command line (argv None) the resident engine server runs it when there is one."""
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-v"]):
        # The most common probe of an installation: answer it without importing the CLI stack.
        print(f"hostrt version {__version__}")
        return 0
    if argv is None and _join_rootless(args) is not None:
        return EXIT_HOSTRT
    # The engine server (unix socket, fd passing, POSIX signals) exists on Linux only.
    if argv is None and sys.platform.startswith("linux") and not _outside_rootless():
        from hostrt import server_client

        code = server_client.delegate(args)
        if code is not None:
            server_client.exit_now(code)
        server_client.spawn_server()
    debug = _debug_requested(args)
    try:
        _secure_roots()
        if args[:1] == ["run"]:
            from hostrt.cli_fast import run_fast

            code = run_fast(args[1:])
            if code is not None:
                return code
        from hostrt.cli import click_app

        result = click_app().main(args=args, prog_name="hostrt", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except HostrtError as err:
        if debug:
            raise
        print(f"hostrt: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return _EXIT_INTERRUPTED
    except Exception as err:
        # typer's command-line errors (unknown flag, bad value) carry exit_code and format_message.
        if type(err).__name__ == "Abort":  # typer's Ctrl-C at a prompt
            return _EXIT_INTERRUPTED
        if hasattr(err, "format_message") and hasattr(err, "exit_code"):
            print(f"hostrt: error: {err.format_message()}", file=sys.stderr)
            print("See 'hostrt --help'.", file=sys.stderr)
            return EXIT_HOSTRT
        raise


if __name__ == "__main__":
    sys.exit(main())
