"""`os` for the runtime, taken from the built-in `posix` module: `import os` costs 1.5-2 ms
of CPU and ~200 KiB per call here (posixpath, stat, genericpath, and _collections_abc for
os.environ), as much as a short command's own work. The runtime's modules import this
module as `os`; everything but the path functions, makedirs and environ is posix's own.

The path functions take and give str, and agree with os.path for what the runtime
passes them (tests/native/test_units.py compares them). `environ` is a str snapshot of
the process environment, for reading."""

from __future__ import annotations

from posix import *  # noqa: F403 - the os functions, which are posix's
from posix import _exit  # noqa: F401 - private names are not in *
from posix import environ as _environb
from posix import getcwd, lstat, mkdir, stat

environ: dict[str, str] = {k.decode(errors="surrogateescape"): v.decode(errors="surrogateescape") for k, v in _environb.items()}

_S_IFMT, _S_IFDIR, _S_IFREG, _S_IFLNK = 0o170000, 0o040000, 0o100000, 0o120000


def _mode(p: str) -> int:
    """st_mode of P, 0 if it cannot be stat'ed (as os.path.exists treats any OSError)."""
    try:
        return stat(p).st_mode
    except (OSError, ValueError):
        return 0


class path:
    """os.path's join, exists, lexists, isdir, isfile, islink, isabs, dirname, basename,
    normpath, abspath, relpath."""

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
    def lexists(p: str) -> bool:
        try:
            lstat(p)
        except (OSError, ValueError):
            return False
        return True

    @staticmethod
    def islink(p: str) -> bool:
        try:
            return lstat(p).st_mode & _S_IFMT == _S_IFLNK
        except (OSError, ValueError):
            return False

    @staticmethod
    def isabs(p: str) -> bool:
        return p.startswith("/")

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

    @staticmethod
    def relpath(p: str, start: str = ".") -> str:
        if not p:
            raise ValueError("no path specified")
        target = [c for c in path.abspath(p).split("/") if c]
        base = [c for c in path.abspath(start).split("/") if c]
        common = 0
        while common < min(len(target), len(base)) and target[common] == base[common]:
            common += 1
        return "/".join([".."] * (len(base) - common) + target[common:]) or "."


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
