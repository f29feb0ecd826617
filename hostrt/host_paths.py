"""How the host OS spells file paths: Windows drives in `-v` and `--share`, macOS' /private.

A host path is the user's (a `-v` source, a machine's share root); the guest only ever sees
POSIX paths below a share. The syntax rules follow `sys.platform` (ntpath's on Windows), pure
string functions that are checked for Windows on any OS; resolving a path asks the file
system, through `os.path` (ntpath itself on Windows).

- `-v C:\\src:/src` and `-v C:/src:/src:ro`: the colon after a drive letter belongs to the path.
- Absolute is what the host's Python calls absolute (`C:\\x`, `C:/x`, a UNC share on Windows).
- Two host paths are compared resolved: on macOS $TMPDIR (/var/folders/...) and /tmp are
  symlinks into /private, so a share and a `-v` source agree only on their real paths. Windows
  compares case-insensitively and with either slash.
"""

from __future__ import annotations

import ntpath
import os
import posixpath
import re
import sys
from collections.abc import Callable
from types import ModuleType

_DRIVE_PATH = re.compile(r"^[A-Za-z]:[\\/]")


def _windows(windows: bool | None) -> bool:
    return sys.platform == "win32" if windows is None else windows


def flavour(windows: bool | None = None) -> ModuleType:
    """The host's path module (None: this host)."""
    return ntpath if _windows(windows) else posixpath


def split_volume(text: str, windows: bool | None = None) -> list[str]:
    """A `-v` value split at its colons, a Windows drive letter's colon kept with its path."""
    if _windows(windows) and _DRIVE_PATH.match(text):
        first, *rest = text[2:].split(":")
        return [text[:2] + first, *rest]
    return text.split(":")


def is_absolute(path: str, windows: bool | None = None) -> bool:
    """Whether `path` does not depend on the current directory."""
    return flavour(windows).isabs(path)


def resolved(path: str) -> str:
    """`path` absolute, normalised and with symlinks resolved by this host's file system."""
    return os.path.realpath(path)


def _folded(path: str, windows: bool) -> str:
    return ntpath.normcase(path) if windows else path


def below(path: str, root: str, windows: bool | None = None,
          resolve: Callable[[str], str] = resolved) -> str | None:
    """Where `path` lies inside the directory `root`, as a relative POSIX path ("" for the root
    itself), or None when it lies outside; both are compared resolved."""
    windows = _windows(windows)
    sep = "\\" if windows else "/"
    real = resolve(path)
    target = _folded(real, windows)
    top = _folded(resolve(root), windows).rstrip(sep)
    if target.rstrip(sep) == top:
        return ""
    if not target.startswith(top + sep):
        return None
    inside = real[len(top) + 1:]
    return inside.replace("\\", "/") if windows else inside
