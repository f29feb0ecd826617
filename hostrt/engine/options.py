"""What the user asked for with `run`/`create`, parsed from docker-spelled flag values into one model.

Each parser raises `UsageError` naming the flag and the bad value, so the CLI can exit 125
with one line before anything is created.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, Field

from hostrt.errors import UsageError
from hostrt.spec_defaults import ALL_CAPABILITIES

_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([bkmg]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MIN_MEMORY = 6 << 20  # docker's floor: smaller limits kill the container before it starts


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


def parse_memory(text: str, flag: str = "--memory") -> int:
    """`512m`, `1g`, `1048576` -> bytes (docker's units, binary multiples)."""
    match = _MEMORY.match(text.strip())
    if not match:
        raise UsageError(f"invalid {flag} value {text!r}: expected a number with an optional unit b, k, m or g")
    value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value < MIN_MEMORY:
        raise UsageError(f"invalid {flag} value {text!r}: the minimum memory limit is 6m")
    return value


def parse_cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"invalid --cpus value {text!r}: expected a number such as 0.5 or 2") from None
    host_cpus = os.cpu_count() or 1
    if not 0.01 <= value <= host_cpus:
        raise UsageError(f"invalid --cpus value {text!r}: range is 0.01 to {host_cpus} (the host's CPUs)")
    return value


def parse_volume(text: str) -> VolumeSpec:
    """`SRC:DST[:ro|rw]` with an absolute host path; named volumes are not supported."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid -v value {text!r}: expected HOSTPATH:CONTAINERPATH[:ro]")
    source, destination = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise UsageError(f"invalid -v value {text!r}: mode must be ro or rw, not {mode!r}")
    if not os.path.isabs(source):
        raise UsageError(f"invalid -v value {text!r}: the host path must be absolute (named volumes are not supported)")
    if not PurePosixPath(destination).is_absolute():
        raise UsageError(f"invalid -v value {text!r}: the container path must be absolute")
    if not os.path.exists(source):
        raise UsageError(f"invalid -v value {text!r}: host path {source} does not exist")
    return VolumeSpec(source=os.path.realpath(source), destination=destination, readonly=mode == "ro")


def parse_env(items: list[str], env_files: tuple[str, ...] | list[str] = ()) -> dict[str, str]:
    """`-e K=V` and `--env-file` lines; a bare `K` takes the host's value (skipped if unset), as docker."""
    env: dict[str, str] = {}
    lines: list[tuple[str, str]] = []
    for file in env_files:
        try:
            text = Path(file).read_text()
        except OSError as err:
            raise UsageError(f"cannot read --env-file {file}: {err.strerror}") from None
        lines += [(f"--env-file {file}", line.strip()) for line in text.splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    lines += [("-e", item) for item in items]
    for origin, item in lines:
        key, sep, value = item.partition("=")
        if not key or any(c.isspace() for c in key):
            raise UsageError(f"invalid {origin} value {item!r}: expected KEY=VALUE")
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


def normalise_capability(name: str, flag: str) -> str:
    """`net_admin`, `NET_ADMIN`, `CAP_NET_ADMIN` -> `CAP_NET_ADMIN`; `ALL` stays `ALL`."""
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in ALL_CAPABILITIES:
        raise UsageError(f"invalid {flag} value {name!r}: unknown capability")
    return full


def parse_security_opts(items: list[str]) -> tuple[bool, str]:
    """`--security-opt` values -> (no_new_privileges, seccomp)."""
    no_new_privileges, seccomp = False, "default"
    for item in items:
        key, sep, value = item.partition("=") if "=" in item else item.partition(":")
        if key == "no-new-privileges" and value in ("", "true"):
            no_new_privileges = True
        elif key == "no-new-privileges" and value == "false":
            no_new_privileges = False
        elif key == "seccomp" and sep and value == "unconfined":
            seccomp = "unconfined"
        elif key == "seccomp" and sep and value:
            if not os.path.isfile(value):
                raise UsageError(f"invalid --security-opt {item!r}: seccomp profile {value} not found")
            seccomp = os.path.realpath(value)
        else:
            raise UsageError(f"invalid --security-opt {item!r}: expected no-new-privileges, seccomp=unconfined or seccomp=FILE")
    return no_new_privileges, seccomp
