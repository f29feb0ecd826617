"""One exception hierarchy for the front end, each carrying the Docker-style exit code it maps to.

The CLI turns any of these into one line on stderr (`hostrt: error: ...`) and its exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_HOSTRT = 125  # hostrt itself failed (docker: daemon error)
EXIT_CANNOT_EXECUTE = 126  # the container's command exists but cannot be run
EXIT_NOT_FOUND = 127  # the container's command does not exist


class HostrtError(Exception):
    """A failure hostrt can explain in one line; the message names the thing that is wrong."""

    exit_code: int = EXIT_HOSTRT


class UsageError(HostrtError):
    """The user asked for something malformed (a bad flag value, a bad reference)."""


class UnsupportedPlatformError(HostrtError):
    """No backend can run this image on this host (e.g. a windows/amd64 image)."""


class BackendUnavailableError(HostrtError):
    """The chosen or requested backend cannot run here (missing QEMU, not Linux, ...)."""


class NotFoundError(HostrtError):
    """A named object (image, container, machine) does not exist."""


class CannotExecuteError(HostrtError):
    """The container's command was found but could not be executed."""

    exit_code = EXIT_CANNOT_EXECUTE


class CommandNotFoundError(HostrtError):
    """The container's command was not found in its filesystem."""

    exit_code = EXIT_NOT_FOUND


def start_failure(message: str, otherwise: type[HostrtError] = HostrtError) -> HostrtError:
    """A runtime's "could not start the process" message as docker maps it: 127 when the
    command is not found, 126 when it cannot be executed, else `otherwise` (125)."""
    if "executable file not found" in message or "no such file or directory" in message.lower():
        return CommandNotFoundError(message)
    if "permission denied" in message.lower():
        return CannotExecuteError(message)
    return otherwise(message)


def first_validation_error(err: Exception) -> str:
    """'where: what' of a pydantic ValidationError's first error, for one-line messages
    (duck-typed, so that this module stays importable without pydantic, as in the guest)."""
    first = err.errors()[0]  # type: ignore[attr-defined]
    where = ".".join(str(part) for part in first["loc"]) or "document"
    return f"{where}: {first['msg']}"
