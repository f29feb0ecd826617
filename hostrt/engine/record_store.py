"""The containers directory: `<root>/<id>/record.json` plus that container's files.

Standard library only: the record *format* is the pydantic model in `records.py`, but the
store itself (ids, unique names, atomic writes) is shared with the fast `run` path, which
must not pay for importing pydantic. Subclasses say how a record is parsed, built and dumped.

A container directory appears whole and disappears whole: it is made as `.new-<id>` with its
record and renamed into place, and removed by renaming it to `.removed-<id>` before its files
are deleted. So an `<id>` directory always has its record, and a writer that comes late
finds no directory rather than making a half one. Writers hold the container's lock
(`dir_locks.py`); the creator holds it until the container has started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hostrt.engine.dir_locks import BUSY, GONE, HELD, DirLocks
from hostrt.engine.ids import ID_PATTERN, NAME_PATTERN, new_id, random_name
from hostrt.errors import HostrtError, NotFoundError, UsageError
from hostrt.locks import file_lock

RECORD_FILE = "record.json"
NEW_PREFIX, REMOVED_PREFIX = ".new-", ".removed-"
LOCK_WAIT = 10.0  # seconds a command waits for another one working on the same container
DIR_MODE = 0o700  # a container's files are its owner's alone (see hostrt.private_dirs)


class ConflictError(HostrtError):
    """A name is taken, or an operation does not fit the container's state."""


class BaseRecordStore:
    """Records on disk; `_parse`, `_new` and `_dump` fix the record type."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.locks = DirLocks()
        self._starting: set[str] = set()  # containers this process holds from creation until started

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
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        with file_lock(self.root / ".names.lock"):
            yield

    # -- locks --------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, container_id: str, timeout: float = LOCK_WAIT) -> Iterator[None]:
        """Hold the container's lock for a change; a container removed meanwhile is not found."""
        state = self.locks.acquire(self.dir_of(container_id), timeout)
        if state == GONE:
            raise NotFoundError(f"no such container: {container_id}")
        if state == BUSY:
            raise ConflictError(f"container {container_id[:12]} is busy: another hostrt command is changing it")
        try:
            yield
        finally:
            self.locks.release(self.dir_of(container_id))

    def probe(self, container_id: str) -> contextlib.AbstractContextManager[str]:
        """HELD for the block if nobody else holds the container's lock, else BUSY or GONE."""
        return self.locks.probe(self.dir_of(container_id))

    def hold_until_started(self, container_id: str) -> None:
        """Keep the container's lock until `started` (or this process ends)."""
        if container_id not in self._starting:
            with self.locked(container_id):
                self.locks.acquire(self.dir_of(container_id))  # one level more, which `started` releases
            self._starting.add(container_id)

    def started(self, container_id: str) -> None:
        """The container runs (its record says so): other commands may change it now."""
        if container_id in self._starting:
            self._starting.discard(container_id)
            self.locks.release(self.dir_of(container_id))

    def lock_fd(self, container_id: str) -> int | None:
        return self.locks.fd(self.dir_of(container_id))

    # -- records ------------------------------------------------------------------------
    def create(self, record_fields: dict) -> Any:
        """Allocate an ID and a unique name, and write the first record; the container stays
        locked by this process until `started`."""
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
            staging, final = self.root / f"{NEW_PREFIX}{record.id}", self.dir_of(record.id)
            os.mkdir(staging, DIR_MODE)
            try:
                self.locks.acquire(staging)
                self._write(staging, record)
                os.rename(staging, final)
            except BaseException:
                self.locks.forget(staging)
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self.locks.moved(staging, final)
            self._starting.add(record.id)
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
        """Replace the record atomically and durably, holding the container's lock."""
        with self.locked(record.id):
            self._write(self.dir_of(record.id), record)

    def save_if_free(self, record: Any) -> bool:
        """Save unless another command holds the container (it writes its own truth) or removed it."""
        with self.probe(record.id) as state:
            if state == HELD:
                self._write(self.dir_of(record.id), record)
            return state == HELD

    def _write(self, directory: Path, record: Any) -> None:
        from hostrt.engine.supervise import replace_durably

        replace_durably(directory / RECORD_FILE, self._dump(record).encode())

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
        """Container directories without a readable record (left by an older hostrt's crash)."""
        if not self.root.is_dir():
            return []
        return [e for e in self.root.iterdir() if ID_PATTERN.match(e.name) and self.load(e.name) is None]

    def unfinished(self) -> list[Path]:
        """Directories of a create or a removal that did not finish (`.new-*`, `.removed-*`)."""
        if not self.root.is_dir():
            return []
        return [e for e in self.root.iterdir() if e.name.startswith((NEW_PREFIX, REMOVED_PREFIX))]

    def remove(self, container_id: str) -> None:
        """Take the directory out of sight in one rename, then delete it."""
        directory = self.dir_of(container_id)
        with self.locked(container_id):
            gone = self.root / f"{REMOVED_PREFIX}{container_id}-{os.urandom(4).hex()}"
            os.rename(directory, gone)
            self.locks.moved(directory, gone)
            self._starting.discard(container_id)
            try:
                shutil.rmtree(gone, ignore_errors=True)
            finally:
                self.locks.forget(gone)
