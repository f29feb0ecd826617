"""The containers directory: `<root>/<id>/record.json` plus that container's files.

Standard library only: the record *format* is the pydantic model in `records.py`, but the
store itself (ids, unique names, atomic writes) is shared with the fast `run` path, which
must not pay for importing pydantic. Subclasses say how a record is parsed, built and dumped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hostrt.engine.ids import ID_PATTERN, NAME_PATTERN, new_id, random_name
from hostrt.errors import HostrtError, NotFoundError, UsageError
from hostrt.locks import file_lock

RECORD_FILE = "record.json"


class ConflictError(HostrtError):
    """A name is taken, or an operation does not fit the container's state."""


class BaseRecordStore:
    """Records on disk; `_parse`, `_new` and `_dump` fix the record type."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- the record type ----------------------------------------------------------------
    def _parse(self, text: str) -> Any:
        """The record in `text`, or None when it is not a valid record."""
        raise NotImplementedError

    def _new(self, **fields: Any) -> Any:
        raise NotImplementedError

    def _dump(self, record: Any) -> str:
        raise NotImplementedError

    # -- the directory ------------------------------------------------------------------
    def dir_of(self, container_id: str) -> Path:
        return self.root / container_id

    @contextlib.contextmanager
    def _names_lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / ".names.lock"):
            yield

    def create(self, record_fields: dict) -> Any:
        """Allocate an ID and a unique name, and write the first record."""
        with self._names_lock():
            taken = self._taken_names()
            name = record_fields.pop("name", None)
            if name:
                if not NAME_PATTERN.match(name):
                    raise UsageError(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
                if name in taken:
                    raise ConflictError(f"the container name {name!r} is already in use")
            else:
                name = random_name()
                while name in taken:
                    name = f"{random_name()}_{new_id()[:4]}"
            record = self._new(id=new_id(), name=name, **record_fields)
            self.dir_of(record.id).mkdir(parents=True)
            self.save(record)
        return record

    def _taken_names(self) -> set[str]:
        """Every record's name, read without building the records (a run checks them all)."""
        names = set()
        if not self.root.is_dir():
            return names
        for entry in os.scandir(self.root):
            if ID_PATTERN.match(entry.name):
                try:
                    with open(os.path.join(entry.path, RECORD_FILE), "rb") as record:
                        names.add(json.loads(record.read())["name"])
                except (OSError, ValueError, KeyError, TypeError):
                    pass  # no record yet, or a broken one: not a container (see orphans)
        return names

    def save(self, record: Any) -> None:
        """Replace the record atomically and durably."""
        directory = self.dir_of(record.id)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".record-")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(self._dump(record))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, directory / RECORD_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, container_id: str) -> Any:
        try:
            text = (self.dir_of(container_id) / RECORD_FILE).read_text()
        except OSError:
            return None
        return self._parse(text)

    def all(self) -> list:
        if not self.root.is_dir():
            return []
        found = [self.load(entry.name) for entry in self.root.iterdir() if ID_PATTERN.match(entry.name)]
        return sorted((r for r in found if r is not None), key=lambda r: r.created_at, reverse=True)

    def find(self, ref: str) -> Any:
        """By full ID, exact name, or unique ID prefix, as docker resolves them."""
        records = self.all()
        for record in records:
            if record.id == ref or record.name == ref:
                return record
        matches = [r for r in records if r.id.startswith(ref.lower())] if ref else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UsageError(f"container reference {ref!r} is ambiguous: {len(matches)} containers match")
        raise NotFoundError(f"no such container: {ref}")

    def orphans(self) -> list[Path]:
        """Container directories without a readable record (a crash between mkdir and save)."""
        if not self.root.is_dir():
            return []
        return [e for e in self.root.iterdir() if ID_PATTERN.match(e.name) and self.load(e.name) is None]

    def remove(self, container_id: str) -> None:
        shutil.rmtree(self.dir_of(container_id), ignore_errors=True)
