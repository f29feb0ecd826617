"""The cached accelerator verdict: a boot probe is slow, so its answer is kept per host.

The probe that boots a guest belongs to the VM backend; this module only stores and reads
its verdict, keyed by what could change it (OS, kernel release, architecture). Until a
probe has run, the verdict is `unprobed` (see `hostrt.platform.unprobed_accelerator`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ValidationError

from hostrt.platform import AcceleratorProbe, AcceleratorVerdict, unprobed_accelerator

CACHE_NAME = "accelerator.json"


class CachedVerdict(BaseModel):
    """A verdict and the host it was measured on."""

    host_os: str
    kernel: str
    architecture: str
    verdict: AcceleratorVerdict


def write_verdict(cache_dir: Path, cached: CachedVerdict) -> None:
    """Store a probe's verdict atomically (temp file + rename), so readers never see half of it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".accelerator-")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(cached.model_dump_json())
        os.replace(tmp, cache_dir / CACHE_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_verdict(cache_dir: Path, host_os: str, kernel: str, architecture: str) -> AcceleratorVerdict | None:
    """The cached verdict if one was measured on this same host, else None."""
    try:
        cached = CachedVerdict.model_validate(json.loads((cache_dir / CACHE_NAME).read_text()))
    except (OSError, ValueError, ValidationError):
        return None
    if (cached.host_os, cached.kernel, cached.architecture) != (host_os, kernel, architecture):
        return None  # a new kernel or a moved root: the old answer proves nothing
    return cached.verdict


def cached_probe(cache_dir: Path, kernel: str) -> AcceleratorProbe:
    """A probe that answers from the cache and otherwise reports `unprobed` (never boots)."""

    def probe(host_os: str, host_arch: str) -> AcceleratorVerdict:
        found = read_verdict(cache_dir, host_os, kernel, host_arch)
        return found if found is not None else unprobed_accelerator(host_os, host_arch)

    return probe
