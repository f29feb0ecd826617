"""A matrix's results as a terminal table, JSON, or JUnit XML (which CI systems display)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from hostrt.matrix.run import CellResult

_TAIL = 4000  # characters of a failed cell's stderr kept in JUnit: enough to see why


def _output_column(result: CellResult, first: bool) -> str:
    if result.matched is None:
        return "-"
    if first:
        return "reference"
    return "same" if result.matched else "differs"


def table(results: list[CellResult]) -> str:
    """One line per cell: cell, backend, accelerator, exit code, wall time, output vs the first cell."""
    header = f"{'CELL':<16}{'PLATFORM':<14}{'BACKEND':<9}{'ACCEL':<7}{'EXIT':<6}{'TIME':>9}  OUTPUT"
    lines = [header]
    first_seen = False
    for result in results:
        cell = result.cell
        if result.status == "skipped":
            lines.append(f"{cell.name:<16}{cell.platform:<14}{cell.backend:<9}{'-':<7}{'-':<6}{'-':>9}  "
                         f"skipped: {cell.skip_reason}")
            continue
        first = not first_seen
        first_seen = True
        lines.append(f"{cell.name:<16}{cell.platform:<14}{cell.backend:<9}{cell.accelerator or '-':<7}"
                     f"{result.exit_code!s:<6}{result.seconds:>8.2f}s  {_output_column(result, first)}")
    ran = [r for r in results if r.status != "skipped"]
    failed = [r.cell.name for r in ran if r.status == "failed"]
    summary = f"{len(ran) - len(failed)} of {len(ran)} cells passed"
    skipped = len(results) - len(ran)
    summary += f", {skipped} skipped" if skipped else ""
    summary += f"; failed: {', '.join(failed)}" if failed else ""
    return "\n".join([*lines, summary])


def as_json(image: str, results: list[CellResult]) -> str:
    cells = []
    for result in results:
        cell = result.cell
        cells.append({
            "name": cell.name, "platform": cell.platform, "backend": cell.backend, "accelerator": cell.accelerator,
            "status": result.status, "exit_code": result.exit_code, "seconds": result.seconds,
            "output_matches_first": result.matched, "stdout": result.stdout, "stderr": result.stderr,
            "skip_reason": cell.skip_reason, "command": ["hostrt", "run", *cell.argv] if cell.argv else None,
        })
    failed = sum(1 for r in results if r.status == "failed")
    return json.dumps({"image": image, "failed": failed, "cells": cells}, indent=2)


def junit(image: str, results: list[CellResult]) -> str:
    """One <testsuite>, one <testcase> per cell: classname is the image, name the cell."""
    failures = sum(1 for r in results if r.status == "failed")
    skipped = sum(1 for r in results if r.status == "skipped")
    suite = ET.Element("testsuite", name=f"hostrt matrix {image}", tests=str(len(results)),
                       failures=str(failures), errors="0", skipped=str(skipped),
                       time=f"{sum(r.seconds for r in results):.3f}")
    for result in results:
        cell = result.cell
        case = ET.SubElement(suite, "testcase", classname=image, name=cell.name, time=f"{result.seconds:.3f}")
        properties = ET.SubElement(case, "properties")
        for key, value in (("platform", cell.platform), ("backend", cell.backend),
                           ("accelerator", cell.accelerator or "-")):
            ET.SubElement(properties, "property", name=key, value=value)
        if result.status == "skipped":
            ET.SubElement(case, "skipped", message=cell.skip_reason or "")
        elif result.status == "failed":
            failure = ET.SubElement(case, "failure", message=f"exit code {result.exit_code}", type="ExitCode")
            failure.text = result.stderr[-_TAIL:]
        if result.stdout:
            ET.SubElement(case, "system-out").text = result.stdout
        if result.stderr:
            ET.SubElement(case, "system-err").text = result.stderr
    root = ET.Element("testsuites", name="hostrt matrix", tests=str(len(results)), failures=str(failures))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
