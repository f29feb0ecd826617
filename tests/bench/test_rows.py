"""The rows of `bench compare` from given measurements (the arithmetic and wording, no machine),
rendered as table, Markdown and PNG."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostrt.bench.report import markdown, plot, table
from hostrt.bench.rows import Comparison, Measurements, Params, build_rows

pytestmark = pytest.mark.portable

PARAMS = Params(rounds=3, density=10, share_mb=64, min_cs=100, spin=20000, budget_mib=4096)
MEASURED = Measurements(
    native_start=[0.5, 0.9, 0.7], cold=[30.0, 20.0, 25.0], warm=[3.0, 2.0, 4.0], boot=12.0,
    native_mem={"one": 10240.0, "all": 20480.0}, vm_mem={"qemu": 512000.0, "agent": 12288.0, "configured_mib": 1024.0},
    native_share=(600.0, 3000.0), vm_share=(40.0, 50.0), spins=(2.0, 2.5, 40.0),
    image_compressed=1_040_000, image_unpacked=1_980_000, guest_image=99_300_000)


def _comparison() -> Comparison:
    return Comparison(image="busybox", platform="linux/amd64", accelerator="tcg", quick=False, budget_mib=4096,
                      measured_at="2026-11-27T00:00:00Z", rows=build_rows(PARAMS, MEASURED))


def test_rows_follow_the_lecture_table_with_their_arithmetic() -> None:
    rows = {row.key: row for row in build_rows(PARAMS, MEASURED)}
    assert list(rows) == ["memory", "start", "density", "image_size", "share_write", "share_read", "efficiency"]
    assert rows["memory"].container == {"PSS + monitor": 10.0}
    assert rows["memory"].vm == {"QEMU RSS": 500.0, "host agent PSS": 12.0}
    assert rows["start"].container == {"native": 0.7}
    assert rows["start"].vm == {"cold": 25.0, "warm": 3.0, "boot to SSH": 12.0}
    # 20480 KiB over 10 containers = 2 MiB each; a VM is 500 + 12 MiB.
    assert rows["density"].container == {"idle containers": 2048.0}
    assert rows["density"].vm == {"by measured RSS": 8.0, "by configured RAM": 4.0}
    assert "extrapolated" in rows["density"].method and "10 idle containers" in rows["density"].method
    assert rows["image_size"].container == {"compressed": 1.04, "unpacked": 1.98}
    assert rows["efficiency"].container == {"native": 80.0} and rows["efficiency"].vm == {"guest": 5.0}
    assert all(row.method for row in rows.values())


def test_table_markdown_and_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    from PIL import Image

    comparison = _comparison()
    text = table(comparison)
    assert "cold 25.0, warm 3.00, boot to SSH 12.0" in text and "TCG emulation" in text
    assert "by measured RSS 8, by configured RAM 4" in text
    md = markdown(comparison).splitlines()
    assert md[2] == "| what | unit | container | VM | how it was measured |" and len(md) == 4 + 7
    plot(comparison, tmp_path / "compare.png")
    with Image.open(tmp_path / "compare.png") as image:
        assert image.format == "PNG" and image.size[0] > 400
        image.verify()
