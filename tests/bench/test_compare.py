"""`hostrt bench compare --quick`: every row measured for real (native containers and an amd64 machine
under libvirt/QEMU), with numbers that make sense (positive, in their units), a valid PNG, and
nothing left behind. The values themselves depend on the host and are not asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hostrt.bench.rows import Comparison
from hostrt.bench.report import markdown, table
from tests.engine.conftest import REPO, Hostrt

ROWS = {"memory": "MiB", "start": "s", "density": "instances", "image_size": "MB", "share_write": "MB/s",
        "share_read": "MB/s", "efficiency": "% of host"}


@pytest.mark.portable
def test_plot_without_matplotlib_is_a_clear_error_before_measuring(tmp_path: Path) -> None:
    probe = ("import sys; sys.modules['matplotlib'] = None\n"
             "from hostrt.__main__ import main\n"
             f"sys.exit(main(['bench', 'compare', '--plot', {str(tmp_path / 'x.png')!r}]))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 125
    assert done.stderr == "hostrt: error: --plot needs matplotlib: pip install 'hostrt[plot]'\n"
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(getattr(os, "geteuid", lambda: -1)() != 0, reason="containers and machines need root")
@pytest.mark.skipif(not Path("/run/libvirt/libvirt-sock").exists(), reason="libvirtd is not running (ci/services starts it)")
def test_quick_compare_measures_every_row(tmp_path_factory: pytest.TempPathFactory, guest_cache: Path,
                                          apt_arch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib", reason="the PNG needs matplotlib (the test extra installs it)")
    from PIL import Image  # matplotlib's own dependency

    apt_arch(subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip())
    root = tmp_path_factory.mktemp("bench-root")
    (root / "cache").mkdir()
    (root / "cache" / "guest").symlink_to(guest_cache)
    hostrt = Hostrt(root, str(Path(sys.executable).with_name("hostrt-runtime")))
    hostrt.ok("image", "build", str(REPO / "images" / "busybox"), timeout=600)
    scratch_before = set(Path(tempfile.gettempdir()).glob("hostrt-benchcmp-*"))
    png = root / "compare.png"

    done = hostrt("bench", "compare", "--quick", "--budget", "4g", "--format", "json", "--plot", str(png), "busybox",
                  timeout=1800)
    assert done.returncode == 0, done.stderr
    comparison = Comparison.model_validate(json.loads(done.stdout))
    assert comparison.image == "busybox" and comparison.quick and comparison.budget_mib == 4096
    rows = {row.key: row for row in comparison.rows}
    assert {key: row.unit for key, row in rows.items()} == ROWS
    for row in comparison.rows:
        assert row.container and row.vm and row.method, row.key
        for value in [*row.container.values(), *row.vm.values()]:
            assert value > 0, f"{row.key}: {row.container} / {row.vm}\n{done.stderr}"
    assert set(rows["start"].vm) >= {"cold", "warm"}
    assert rows["density"].title == "instances in 4096 MiB" and "extrapolated" in rows["density"].method
    assert rows["efficiency"].container["native"] <= 1000 and rows["memory"].vm["QEMU RSS"] < 65536

    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 400
        image.verify()
    text, md = table(comparison), markdown(comparison)
    assert all(row.title in text and row.title in md for row in comparison.rows)
    assert set(Path(tempfile.gettempdir()).glob("hostrt-benchcmp-*")) == scratch_before, "the scratch root is removed"
    assert json.loads(hostrt.ok("machine", "ls", "--format", "json")) == [], "the user's root has no machine"
    assert hostrt.ok("ps", "-aq") == ""
