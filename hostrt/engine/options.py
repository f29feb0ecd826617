"""What the user asked for with `run`/`create`, parsed from docker-spelled flag values into one model.

Each parser raises `UsageError` naming the flag and the bad value, so the CLI can exit 125
with one line before anything is created.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, Field

from hostrt.errors import UsageError
from hostrt.engine.option_values import (  # noqa: F401 - re-exported: the parsers' historic home
    MIN_MEMORY,
    normalise_capability,
    parse_cpus,
    parse_env,
    parse_memory,
    parse_security_opts,
)


class VolumeSpec(BaseModel):
    """`-v SRC:DST[:ro]`: a host directory or file bind-mounted into the container."""

    source: str
    destination: str
    readonly: bool = False


class RunOptions(BaseModel):
    """Everything `run`/`create` takes besides the image; defaults are docker's."""

    name: str | None = None
    command: list[str] = Field(default_factory=list)
    entrypoint: list[str] | None = None  # None: the image's; [] (from --entrypoint ""): none
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    volumes: list[VolumeSpec] = Field(default_factory=list)
    tmpfs: list[str] = Field(default_factory=list)
    read_only: bool = False
    memory: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    cap_add: list[str] = Field(default_factory=list)
    cap_drop: list[str] = Field(default_factory=list)
    no_new_privileges: bool = False
    seccomp: str = "default"  # "default", "unconfined", or a profile file's path
    hostname: str | None = None
    network: str = "bridge"  # bridge, none, host, container:NAME or a user network
    publish: list[dict] = Field(default_factory=list)  # hostrt.network.ports.PortSpec as dicts
    tty: bool = False
    interactive: bool = False


def parse_volume(text: str) -> VolumeSpec:
    """`SRC:DST[:ro|rw]` with an absolute host path (on Windows `C:\\src` or `C:/src`); named
    volumes are not supported. The source is kept resolved (see hostrt.host_paths)."""
    from hostrt import host_paths

    parts = host_paths.split_volume(text)
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid -v value {text!r}: expected HOSTPATH:CONTAINERPATH[:ro]")
    source, destination = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise UsageError(f"invalid -v value {text!r}: mode must be ro or rw, not {mode!r}")
    if not host_paths.is_absolute(source):
        raise UsageError(f"invalid -v value {text!r}: the host path must be absolute (named volumes are not supported)")
    if not PurePosixPath(destination).is_absolute():
        raise UsageError(f"invalid -v value {text!r}: the container path must be absolute")
    if not os.path.exists(source):
        raise UsageError(f"invalid -v value {text!r}: host path {source} does not exist")
    return VolumeSpec(source=host_paths.resolved(source), destination=destination, readonly=mode == "ro")
