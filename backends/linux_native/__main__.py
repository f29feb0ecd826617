"""`hostrt-runtime`: the runc-compatible command line. Only the modules of the command
being run are imported: start-up time is on every container's critical path."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import sys

from backends.linux_native import OCI_VERSION, __version__, cli
from backends.linux_native.errors import RuntimeFailure
from backends.linux_native.log import LOG
from backends.linux_native.sealed_exe import FORKS_CONTAINER_PROCESS

# command -> module under backends.linux_native.ops
OPERATIONS = {
    "create": "create", "run": "run", "start": "start", "state": "state", "list": "state",
    "kill": "kill", "delete": "delete", "exec": "exec", "pause": "pause", "resume": "pause",
    "ps": "ps", "update": "update", "events": "events", "features": "features", "spec": "features",
}


def main(argv: list[str] | None = None) -> int:
    """The command line; ARGV given means a caller that forked us (runtime_fork), whose
    process is not ours to re-execute."""
    argv_given = argv
    argv = sys.argv[1:] if argv is None else argv
    try:
        glob, command, opts = cli.parse(argv)
    except RuntimeFailure as exc:
        sys.stderr.write(f"hostrt-runtime: {exc}\n{cli.USAGE}")
        return exc.exit_code
    if command in ("h", "help"):
        sys.stdout.write(cli.USAGE)
        return 0
    if command == "v":
        sys.stdout.write(f"hostrt-runtime version {__version__}\nspec: {OCI_VERSION}\n")
        return 0
    if argv_given is None and command in FORKS_CONTAINER_PROCESS:
        from backends.linux_native import sealed_exe

        sealed_exe.reexec()  # forks container processes: see sealed_exe.py
    LOG.configure(glob.log, glob.log_format or "text", bool(glob.debug))
    # create chdirs into the bundle: a relative --root must not follow it there.
    glob.root = os.path.abspath(glob.root)
    if command in FORKS_CONTAINER_PROCESS:  # each moves its new process into a cgroup (cgroups/prime.py)
        from backends.linux_native.cgroups.prime import prime_attach

        prime_attach()
    module = __import__(f"backends.linux_native.ops.{OPERATIONS[command]}", fromlist=["run"])
    try:
        return int(module.main(command, glob, opts) or 0)
    except RuntimeFailure as exc:
        LOG.error(str(exc))
        return exc.exit_code
    except OSError as exc:
        LOG.error(f"{command}: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - containerd reads the log, not a traceback
        LOG.error(f"{command}: internal error: {exc.__class__.__name__}: {exc}")
        if glob.debug:
            raise
        return 1


def exit_now(code: int) -> None:
    """Leave without interpreter finalization (module teardown, GC): nothing is left to
    clean up, and it is milliseconds on every call."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
