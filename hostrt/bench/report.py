"""`bench compare` results as a terminal table, JSON, Markdown, or a PNG of bar charts."""

from __future__ import annotations

import json
from pathlib import Path

from hostrt.bench.rows import Comparison, Row
from hostrt.errors import BackendUnavailableError


def _number(value: float, unit: str = "") -> str:
    if unit == "instances":
        return f"{int(value):,}"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(values: dict[str, float], unit: str) -> str:
    if len(values) == 1:
        return _number(next(iter(values.values())), unit)
    return ", ".join(f"{label} {_number(value, unit)}" for label, value in values.items())


def _heading(comparison: Comparison) -> str:
    mode = "quick (1 round)" if comparison.quick else "full"
    return (f"image {comparison.image} ({comparison.platform}); VM accelerator: {comparison.accelerator}; "
            f"{mode}; {comparison.measured_at}")


def table(comparison: Comparison) -> str:
    rows = [(r.title, r.unit, _cell(r.container, r.unit), _cell(r.vm, r.unit)) for r in comparison.rows]
    widths = [max(len(row[i]) for row in [("WHAT", "UNIT", "CONTAINER", "VM"), *rows]) for i in range(4)]
    lines = [_heading(comparison)]
    for row in [("WHAT", "UNIT", "CONTAINER", "VM"), *rows]:
        lines.append("  ".join(text.ljust(widths[i]) for i, text in enumerate(row)).rstrip())
    notes = [f"  {r.title}: {r.note}" for r in comparison.rows if r.note]
    if comparison.accelerator == "tcg":
        notes.append("  the VM runs under TCG emulation here: its times and CPU figures are far from a KVM/HVF host's")
    return "\n".join([*lines, "notes:", *notes] if notes else lines)


def markdown(comparison: Comparison) -> str:
    lines = [f"_{_heading(comparison)}_", "", "| what | unit | container | VM | how it was measured |",
             "| --- | --- | --- | --- | --- |"]
    for r in comparison.rows:
        how = r.method + (f" ({r.note})" if r.note else "")
        lines.append(f"| {r.title} | {r.unit} | {_cell(r.container, r.unit)} | {_cell(r.vm, r.unit)} | {how} |")
    return "\n".join(lines)


def as_json(comparison: Comparison, samples: dict) -> str:
    data = comparison.model_dump(mode="json")
    data["start_samples"] = samples
    return json.dumps(data, indent=2)


def plot(comparison: Comparison, path: Path) -> None:
    """One bar chart per row (container bars, then VM bars), in one PNG."""
    try:
        import matplotlib
    except ImportError:
        raise BackendUnavailableError("--plot needs matplotlib: pip install 'hostrt[plot]'") from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    rows: list[Row] = comparison.rows
    columns = 2
    lines = (len(rows) + columns - 1) // columns
    figure, axes = plt.subplots(lines, columns, figsize=(12, 3.2 * lines), squeeze=False)
    for axis, row in zip(axes.flat, rows):
        labels = [f"container\n{k}" for k in row.container] + [f"VM\n{k}" for k in row.vm]
        values = [*row.container.values(), *row.vm.values()]
        colours = ["#2a7ab0"] * len(row.container) + ["#d9822b"] * len(row.vm)
        bars = axis.bar(range(len(values)), values, color=colours)
        axis.set_xticks(range(len(values)), labels, fontsize=8)
        axis.set_title(f"{row.title} ({row.unit})", fontsize=10)
        axis.bar_label(bars, labels=[_number(v, row.unit) for v in values], fontsize=8)
        if values and min(values) > 0 and max(values) / min(values) > 50:
            axis.set_yscale("log")  # a VM and a container differ by orders of magnitude on some rows
    for axis in list(axes.flat)[len(rows):]:
        axis.set_visible(False)
    figure.suptitle(f"hostrt bench compare: {_heading(comparison)}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)
