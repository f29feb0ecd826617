"""What `run IMAGE` resolved last time: the image's record fields, config and unpacked layer
directories, so the fast path (`cli_fast.py`) neither parses the store's documents with
pydantic nor re-hashes the manifest and config on every run.

An entry is written by the full path after it resolved an image for the native backend, and
is trusted only while the store's `index.json` is the very file it was resolved from (inode,
size and mtime: every tag, pull, load and rmi replaces it) and every layer directory still
exists. Anything else is a miss, and the full path runs. Standard library only.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostrt.paths import Paths

_RECORD_FIELDS = ("image", "image_digest", "platform", "stop_signal")


@dataclass(frozen=True)
class CachedImage:
    """An image as the fast path needs it; `config` is what the native backend's prepare reads."""

    fields: dict[str, Any]  # the record fields taken from the image
    config: dict[str, Any]
    lower_dirs: list[Path]


def _machine() -> str:
    uname = getattr(os, "uname", None)  # absent on Windows, where nothing runs natively anyway
    return uname().machine if uname else ""


def index_stamp(paths: Paths) -> list[int] | None:
    """Identity of the store's index.json: it is replaced (temp + rename) on every change of names."""
    try:
        st = os.stat(paths.store / "index.json")
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _entry_path(paths: Paths, text: str) -> Path:
    from urllib.parse import quote  # already loaded by pathlib; hashlib would cost more than this lookup

    return paths.cache / "run-images" / (quote(text, safe="") + ".json")


def remember(paths: Paths, stamp: list[int] | None, text: str, fields: dict[str, Any], config: dict[str, Any],
             lower_dirs: list[Path]) -> None:
    """Keep what `text` resolved to (when the index existed before resolving it); best effort."""
    if stamp is None:
        return
    entry = {"text": text, "stamp": stamp, "machine": _machine(),
             "fields": {key: fields[key] for key in _RECORD_FIELDS}, "config": config,
             "lower_dirs": [str(d) for d in lower_dirs]}
    path = _entry_path(paths, text)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".entry-")
        with os.fdopen(fd, "w") as out:
            json.dump(entry, out)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache: the next run resolves the image again


def lookup(paths: Paths, text: str) -> CachedImage | None:
    """The cached resolution of `text`, or None when it may be stale."""
    try:
        entry = json.loads(_entry_path(paths, text).read_text())
    except (OSError, ValueError):
        return None
    if entry.get("text") != text or entry.get("machine") != _machine():
        return None
    if entry.get("stamp") != index_stamp(paths):
        return None
    lower_dirs = [Path(d) for d in entry["lower_dirs"]]
    if not all(d.is_dir() for d in lower_dirs):
        return None
    return CachedImage(dict(entry["fields"]), entry["config"], lower_dirs)
