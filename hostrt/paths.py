"""Where hostrt keeps lasting data and runtime state, per user and overridable for tests.

Root uses the FHS locations (/var/lib/hostrt, /run/hostrt); other users the XDG ones.
`HOSTRT_ROOT` moves everything (tests always set it to a temporary directory).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path


def _is_root() -> bool:
    """Root of the host: not the root of a rootless user namespace (hostrt/rootless), whose
    data stays in the user's own directories."""
    geteuid = getattr(os, "geteuid", None)  # absent on Windows
    return geteuid is not None and geteuid() == 0 and "HOSTRT_ROOTLESS_UID" not in os.environ


def _user_data_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "hostrt"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hostrt"


def data_root() -> Path:
    """The directory that holds images, containers, machines and caches."""
    override = os.environ.get("HOSTRT_ROOT")
    if override:
        return Path(override)
    if _is_root() and sys.platform.startswith("linux"):
        return Path("/var/lib/hostrt")
    return _user_data_dir()


def run_root() -> Path:
    """The directory for state that must not survive a reboot (runtime state, locks, sockets)."""
    override = os.environ.get("HOSTRT_RUN_ROOT")
    if override:
        return Path(override)
    if os.environ.get("HOSTRT_ROOT"):
        return Path(os.environ["HOSTRT_ROOT"]) / "run"
    if _is_root() and sys.platform.startswith("linux"):
        return Path("/run/hostrt")
    xdg_runtime = os.environ.get("XDG_RUNTIME_DIR")
    if xdg_runtime:
        return Path(xdg_runtime) / "hostrt"
    import tempfile  # only here: every command computes this path, and tempfile imports random and shutil

    if not hasattr(os, "getuid"):  # Windows: the temp directory is the user's own already
        return Path(tempfile.gettempdir()) / "hostrt"
    uid = int(os.environ.get("HOSTRT_ROOTLESS_UID") or os.getuid())
    return Path(tempfile.gettempdir()) / f"hostrt-{uid}"


@dataclass(frozen=True)
class Paths:
    """The named subdirectories of one hostrt root; nothing is created until asked."""

    root: Path
    run: Path

    @classmethod
    def default(cls) -> "Paths":
        return cls(root=data_root(), run=run_root())

    @property
    def store(self) -> Path:
        """The OCI image layout (content store)."""
        return self.root / "store"

    @property
    def layers(self) -> Path:
        """Unpacked layers, one directory per layer digest."""
        return self.root / "layers"

    @property
    def containers(self) -> Path:
        """Container records and their bundles."""
        return self.root / "containers"

    @property
    def machines(self) -> Path:
        """One directory per VM machine."""
        return self.root / "machines"

    @property
    def cache(self) -> Path:
        """Derived facts worth keeping (the accelerator verdict, built guest images)."""
        return self.root / "cache"

    @property
    def runtime_state(self) -> Path:
        """The `--root` of the native OCI runtime."""
        return self.run / "runtime"
