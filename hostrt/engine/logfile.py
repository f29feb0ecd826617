"""Container logs in docker's json-file format: one JSON object per line (log, stream, time)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path


def entry(stream: str, text: str) -> str:
    """One log line, ready to append."""
    stamp = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return json.dumps({"log": text, "stream": stream, "time": stamp}) + "\n"


def parse(text: str) -> list[dict]:
    entries = []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash mid-write
    return entries


def read_entries(path: Path) -> list[dict]:
    """The rotated file first, then the current one."""
    entries: list[dict] = []
    for part in (path.with_name(path.name + ".1"), path):
        try:
            entries += parse(part.read_text())
        except OSError:
            continue
    return entries
