"""Container records without pydantic, for the fast `run` path (`cli_fast.py`).

`records.ContainerRecord` and `options.RunOptions` stay the schema: these dataclasses mirror
their fields, defaults and order, and write the same JSON (tests check that every record
written here validates against the models and round-trips, and that the fields match).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from hostrt.engine.record_store import BaseRecordStore


@dataclass
class PlainVolume:
    source: str
    destination: str
    readonly: bool = False


@dataclass
class PlainOptions:
    """Mirror of `RunOptions`."""

    name: str | None = None
    command: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    volumes: list[PlainVolume] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    read_only: bool = False
    memory: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    no_new_privileges: bool = False
    seccomp: str = "default"
    hostname: str | None = None
    network: str = "bridge"
    publish: list[dict] = field(default_factory=list)
    tty: bool = False
    interactive: bool = False


@dataclass
class PlainRecord:
    """Mirror of `ContainerRecord`."""

    id: str
    name: str
    image: str
    image_digest: str = ""
    platform: str = ""
    backend: str = "native"
    machine: str | None = None
    options: PlainOptions = field(default_factory=PlainOptions)
    args: list[str] = field(default_factory=list)
    stop_signal: str = "SIGTERM"
    auto_remove: bool = False
    status: str = "created"
    pid: int | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None

    def to_json(self) -> str:
        """The JSON `ContainerRecord.model_dump_json()` writes for the same values (compact:
        the json module's C encoder serves only that form, the indented one is pure Python)."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PlainRecord":
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        opts = dict(values.get("options") or {})
        opts = {k: v for k, v in opts.items() if k in PlainOptions.__dataclass_fields__}
        opts["volumes"] = [PlainVolume(**v) for v in opts.get("volumes") or []]
        values["options"] = PlainOptions(**opts)
        return cls(**values)


class PlainRecordStore(BaseRecordStore):
    """The containers directory, read and written as `PlainRecord`s."""

    def _parse(self, text: str) -> PlainRecord | None:
        try:
            data = json.loads(text)
            return PlainRecord.from_dict(data) if isinstance(data, dict) else None
        except (ValueError, TypeError):
            return None

    def _new(self, **values: Any) -> PlainRecord:
        return PlainRecord(**values)

    def _dump(self, record: PlainRecord) -> str:
        return record.to_json()
