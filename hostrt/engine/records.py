"""Container records: one JSON file per container, written whole (temp + fsync + rename).

The record is the truth `ps` shows; anything a crash leaves behind (mounts, cgroups, upper
dirs) hangs off a record's directory, so `system prune` finds it there. Names are unique:
claiming one takes a lock on the records directory, so concurrent `run`s cannot share a name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from hostrt.engine.ids import ID_PATTERN, NAME_PATTERN, new_id, random_name
from hostrt.engine.options import RunOptions
from hostrt.errors import HostrtError, NotFoundError, UsageError
from hostrt.locks import file_lock

Status = Literal["created", "running", "paused", "exited", "dead"]
RECORD_FILE = "record.json"


class ConflictError(HostrtError):
    """A name is taken, or an operation does not fit the container's state."""


class ContainerRecord(BaseModel):
    """Everything hostrt knows about one container."""

    id: str
    name: str
    image: str
    image_digest: str = ""
    platform: str = ""
    backend: Literal["native", "lightvm"] = "native"
    machine: str | None = None
    options: RunOptions = Field(default_factory=RunOptions)
    args: list[str] = Field(default_factory=list)
    stop_signal: str = "SIGTERM"
    auto_remove: bool = False
    status: Status = "created"
    pid: int | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None


class RecordStore:
    """The containers directory: `<root>/<id>/record.json` plus that container's files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def dir_of(self, container_id: str) -> Path:
        return self.root / container_id

    @contextlib.contextmanager
    def _names_lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / ".names.lock"):
            yield

    def create(self, record_fields: dict) -> ContainerRecord:
        """Allocate an ID and a unique name, and write the first record."""
        with self._names_lock():
            taken = {r.name for r in self.all()}
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
            record = ContainerRecord(id=new_id(), name=name, **record_fields)
            self.dir_of(record.id).mkdir(parents=True)
            self.save(record)
        return record

    def save(self, record: ContainerRecord) -> None:
        """Replace the record atomically and durably."""
        directory = self.dir_of(record.id)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".record-")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(record.model_dump_json(indent=1))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, directory / RECORD_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, container_id: str) -> ContainerRecord | None:
        try:
            return ContainerRecord.model_validate_json((self.dir_of(container_id) / RECORD_FILE).read_text())
        except (OSError, ValidationError):
            return None

    def all(self) -> list[ContainerRecord]:
        if not self.root.is_dir():
            return []
        found = [self.load(entry.name) for entry in self.root.iterdir() if ID_PATTERN.match(entry.name)]
        return sorted((r for r in found if r is not None), key=lambda r: r.created_at, reverse=True)

    def find(self, ref: str) -> ContainerRecord:
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
