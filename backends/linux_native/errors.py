"""One error type per failure a caller can act on; the command line turns each into a log
line and an exit code."""

from __future__ import annotations


class RuntimeFailure(Exception):
    """Any failure of a runtime command; exit status 1, as runc."""

    exit_code = 1


class UsageError(RuntimeFailure):
    """Bad command line."""

    exit_code = 2


class ContainerNotFound(RuntimeFailure):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container does not exist: {container_id}")


class ContainerExists(RuntimeFailure):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container with id exists: {container_id}")


class BadState(RuntimeFailure):
    """The operation is not allowed in the container's current status."""


class ConfigError(RuntimeFailure):
    """config.json is missing, unreadable or asks for something impossible."""
