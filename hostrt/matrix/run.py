"""Run a matrix's cells: each one a real `hostrt run --rm` of its own, as a user would type it.

Cells of one lane share a machine and run one after another (a machine boots once, and two
first runs never race to create it); lanes run in parallel, at most `jobs` at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel

from hostrt.matrix.cells import Cell

CellStatus = str  # passed, failed, skipped


class CellResult(BaseModel):
    """What one cell did; `matched` compares its stdout with the first cell that ran."""

    cell: Cell
    status: CellStatus
    exit_code: int | None = None
    seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""
    matched: bool | None = None


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def _run_cell(cell: Cell, timeout: float, env: dict[str, str]) -> CellResult:
    if cell.skip_reason:
        return CellResult(cell=cell, status="skipped")
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "hostrt", "run", *cell.argv], capture_output=True,
                              stdin=subprocess.DEVNULL, env=env, timeout=timeout)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        code, out = 124, expired.stdout or b""
        err = (expired.stderr or b"") + f"hostrt matrix: cell {cell.name} timed out after {timeout:.0f} s\n".encode()
    return CellResult(cell=cell, status="passed" if code == 0 else "failed", exit_code=code,
                      seconds=round(time.monotonic() - started, 3), stdout=out.decode(errors="replace"),
                      stderr=err.decode(errors="replace"))


def run_cells(cells: list[Cell], jobs: int, timeout: float,
              progress: Callable[[CellResult], None] = lambda _r: None) -> list[CellResult]:
    """Run every cell (lanes in parallel, a lane in order); results in the cells' order."""
    env = dict(os.environ)
    lanes: dict[str, list[int]] = {}
    for index, cell in enumerate(cells):
        lanes.setdefault(cell.lane, []).append(index)
    results: list[CellResult | None] = [None] * len(cells)

    def run_lane(indexes: list[int]) -> None:
        for index in indexes:
            results[index] = _run_cell(cells[index], timeout, env)
            progress(results[index])  # type: ignore[arg-type]

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(run_lane, indexes) for indexes in lanes.values()]:
            future.result()
    finished = [r for r in results if r is not None]
    reference = next((r for r in finished if r.status != "skipped"), None)
    for result in finished:
        if result.status != "skipped" and reference is not None:
            result.matched = result.stdout == reference.stdout
    return finished
