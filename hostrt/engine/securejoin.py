"""Resolve a path inside a container's root filesystem as the container would see it.

Symlinks are followed relative to the container's root, never the host's: `/etc -> /`
or `../../..` inside the rootfs cannot lead `hostrt cp` out of it.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from hostrt.errors import UsageError

MAX_LINKS = 40


def secure_join(root: Path, path: str) -> Path:
    """The host path of container path `path` under `root`, with every symlink resolved inside root."""
    pending = list(PurePosixPath("/", path).parts[1:])
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            links += 1
            if links > MAX_LINKS:
                raise UsageError(f"too many levels of symbolic links in {path}")
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                resolved = []
            pending = [p for p in target.parts if p != "/"] + pending
            continue
        resolved.append(part)
    return root.joinpath(*resolved)
