"""The part of `os` that the runtime's short commands (start, state, kill, delete) use,
taken from the built-in `posix` module. `import os` costs 1.5-2 ms of CPU per call here
(posixpath, stat, genericpath, and _collections_abc for os.environ): as much as those
commands' own work. Modules only on the create/exec path import os as usual.

The path functions take and give str, and agree with os.path for what the runtime
passes them (tests/native/test_units.py compares them)."""

from __future__ import annotations

from posix import (  # noqa: F401 - re-exported
    O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_NONBLOCK, O_RDONLY, O_WRONLY, WNOHANG, _exit, close, getcwd, getpid,
    kill, listdir, lstat, mkdir, open, pidfd_open, read, rename, rmdir, stat, statvfs, unlink, waitpid, write,
)

_S_IFMT, _S_IFDIR, _S_IFREG = 0o170000, 0o040000, 0o100000


def _mode(p: str) -> int:
    """st_mode of P, 0 if it cannot be stat'ed (as os.path.exists treats any OSError)."""
    try:
        return stat(p).st_mode
    except (OSError, ValueError):
        return 0


class path:
    """os.path's join, exists, isdir, isfile, dirname, basename, normpath, abspath."""

    @staticmethod
    def join(a: str, *rest: str) -> str:
        result = a
        for part in rest:
            if part.startswith("/"):
                result = part
            elif not result or result.endswith("/"):
                result += part
            else:
                result += "/" + part
        return result

    @staticmethod
    def exists(p: str) -> bool:
        return _mode(p) != 0

    @staticmethod
    def isdir(p: str) -> bool:
        return _mode(p) & _S_IFMT == _S_IFDIR

    @staticmethod
    def isfile(p: str) -> bool:
        return _mode(p) & _S_IFMT == _S_IFREG

    @staticmethod
    def dirname(p: str) -> str:
        head = p[: p.rfind("/") + 1]
        return head.rstrip("/") or head

    @staticmethod
    def basename(p: str) -> str:
        return p[p.rfind("/") + 1 :]

    @staticmethod
    def normpath(p: str) -> str:
        if not p:
            return "."
        initial = 2 if p.startswith("//") and not p.startswith("///") else 1 if p.startswith("/") else 0
        parts: list[str] = []
        for comp in p.split("/"):
            if comp in ("", "."):
                continue
            if comp != ".." or (not initial and not parts) or (parts and parts[-1] == ".."):
                parts.append(comp)
            elif parts:
                parts.pop()
        return "/" * initial + "/".join(parts) or "."

    @staticmethod
    def abspath(p: str) -> str:
        return path.normpath(p if p.startswith("/") else path.join(getcwd(), p))


def makedirs(name: str, mode: int = 0o777, exist_ok: bool = False) -> None:
    """os.makedirs: parents first, each created with MODE."""
    parent = path.dirname(name.rstrip("/"))
    if parent and parent != name and not path.exists(parent):
        makedirs(parent, mode, exist_ok=True)
    try:
        mkdir(name, mode)
    except FileExistsError:
        if not exist_ok or not path.isdir(name):
            raise
