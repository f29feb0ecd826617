"""A throw-away hostrt root for benchmarks: the user's containers and machines are never
stopped, counted or measured by mistake, and nothing is left behind.

It reuses what is expensive and safe to share (the built guest images, the accelerator
verdict) and copies the one image under test into its own store (save, then load).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostrt.errors import HostrtError
from hostrt.paths import Paths


class BenchError(HostrtError):
    """A step of the benchmark failed; the message names the command and its error."""


class ScratchRoot:
    """Runs `hostrt` commands against a temporary root; `close()` removes its containers, machines and files."""

    def __init__(self, source: Paths, image: str) -> None:
        # Under the temporary directory: machines share it with their guests by default (9p), which
        # the data-sharing measurement needs; a VM run's volume must live below a share.
        self.root = Path(tempfile.mkdtemp(prefix="hostrt-benchcmp-"))
        self.image = image
        self.env = {**os.environ, "HOSTRT_ROOT": str(self.root)}
        self.env.pop("HOSTRT_RUN_ROOT", None)
        try:
            cache = self.root / "cache"
            cache.mkdir()
            (source.cache / "guest").mkdir(parents=True, exist_ok=True)
            (cache / "guest").symlink_to(source.cache / "guest")
            for verdict in source.cache.glob("*.json"):
                shutil.copy2(verdict, cache / verdict.name)
            archive = self.root / "image.tar"
            self._source_hostrt(source, "save", "-o", str(archive), image)
            self.ok("load", "-i", str(archive))
            archive.unlink()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @property
    def paths(self) -> Paths:
        return Paths(root=self.root, run=self.root / "run")

    def _source_hostrt(self, source: Paths, *args: str) -> None:
        env = {**os.environ, "HOSTRT_ROOT": str(source.root), "HOSTRT_RUN_ROOT": str(source.run)}
        done = subprocess.run([sys.executable, "-m", "hostrt", *args], env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=600)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no error output)"])[-1].removeprefix("hostrt: error: ")
            raise BenchError(f"hostrt {' '.join(args)} failed: {last}")

    def __call__(self, *args: str, timeout: float = 1800) -> tuple[subprocess.CompletedProcess[str], float]:
        """Run `hostrt ARGS` in the scratch root; returns the process and its wall time."""
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "hostrt", *args], env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        return done, time.monotonic() - started

    def ok(self, *args: str, timeout: float = 1800) -> str:
        done, _ = self(*args, timeout=timeout)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no error output)"])[-1].removeprefix("hostrt: error: ")
            raise BenchError(f"hostrt {' '.join(args)} failed ({done.returncode}): {last}")
        return done.stdout

    def timed_ok(self, *args: str, timeout: float = 1800) -> float:
        started = time.monotonic()
        self.ok(*args, timeout=timeout)
        return time.monotonic() - started

    def machine(self, name: str) -> dict | None:
        done, _ = self("machine", "inspect", name, timeout=120)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def close(self) -> None:
        """Remove every container and machine of the scratch root, then the root itself."""
        try:
            ids = self("ps", "-aq", timeout=120)[0].stdout.split()
            if ids:
                self("rm", "-f", *ids, timeout=600)
            if (self.root / "machines").is_dir():
                names = [p.name for p in (self.root / "machines").iterdir() if not p.name.startswith(".")]
                if names:
                    self("machine", "rm", *names, timeout=300)
            for monitor in _monitors(self.root):
                try:
                    os.kill(monitor, 15)
                except OSError:
                    pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _monitors(root: Path) -> list[int]:
    from hostrt.bench.procmem import find_by_cmdline

    return find_by_cmdline("hostrt.engine.monitor", f"--socket {root}/")
