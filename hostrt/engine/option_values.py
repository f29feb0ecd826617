"""Parsers of docker-spelled `run` flag values (`-e`, `--memory`, `--cpus`, `--cap-add`,
`--security-opt`), standard library only so the fast `run` path can share them.

Each parser raises `UsageError` naming the flag and the bad value, so the CLI can exit 125
with one line before anything is created.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hostrt.errors import UsageError
from hostrt.spec_defaults import ALL_CAPABILITIES

_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([bkmg]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MIN_MEMORY = 6 << 20  # docker's floor: smaller limits kill the container before it starts


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
