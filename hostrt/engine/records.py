"""Container records: the pydantic model of one container, and the store that reads and
writes it (one JSON file per container, written whole: temp + fsync + rename).

The record is the truth `ps` shows; anything a crash leaves behind (mounts, cgroups, upper
dirs) hangs off a record's directory, so `system prune` finds it there. Names are unique:
claiming one takes a lock on the records directory, so concurrent `run`s cannot share a name.
The directory logic lives in `record_store.py` (standard library, shared with the fast path).
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from hostrt.engine.options import RunOptions
from hostrt.engine.record_store import RECORD_FILE, BaseRecordStore, ConflictError

__all__ = ["RECORD_FILE", "ConflictError", "ContainerRecord", "RecordStore", "Status"]

Status = Literal["created", "running", "paused", "exited", "dead"]


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


class RecordStore(BaseRecordStore):
    """The containers directory, read and written as `ContainerRecord`s."""

    def _parse(self, text: str) -> ContainerRecord | None:
        try:
            return ContainerRecord.model_validate_json(text)
        except ValidationError:
            return None

    def _new(self, **fields: object) -> ContainerRecord:
        return ContainerRecord(**fields)

    def _dump(self, record: ContainerRecord) -> str:
        return record.model_dump_json()
