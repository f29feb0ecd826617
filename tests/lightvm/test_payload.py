"""The code shipped into a machine is complete on its own: the guest has Python's standard
library and nothing else, so every shipped entry point must import from the payload alone."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

from backends.lightvm.payload import payload
from tests.lightvm.conftest import extract_payload

ENTRY_POINTS = ("backends.lightvm.guest_agent", "backends.lightvm.guestd", "hostrt.engine.monitor",
                "hostrt.engine.monitor_client", "hostrt.engine.runtime_fork", "hostrt.images.unpack",
                "backends.linux_native.__main__")


def test_payload_imports_without_site_packages(tmp_path: Path) -> None:
    version, data = payload()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        extract_payload(tar, tmp_path)
    probe = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); " + "; ".join(f"import {m}" for m in ENTRY_POINTS)
    probe += "; backends.lightvm.guestd.preload()"  # everything the resident guest daemon imports
    # -S: no site-packages (no pydantic, no typer), -E: no PYTHONPATH; run from the payload, not the repository.
    done = subprocess.run([sys.executable, "-S", "-E", "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "hostrt-runtime").stat().st_mode & 0o111


def test_payload_version_follows_its_content() -> None:
    version, data = payload()
    assert len(version) == 16 and payload() == (version, data), "computed once, stable"
