"""The parts of `hostrt matrix` that need no container: planning cells (host facts made up,
the planning logic real), matrix files, the JUnit/JSON reports, and the CLI's own errors."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hostrt.matrix.cells import Cell, cross_product, load_file, plan
from hostrt.matrix.report import as_json, junit, table
from hostrt.matrix.run import CellResult
from hostrt.platform import AcceleratorVerdict, HostInfo

pytestmark = pytest.mark.portable

LINUX_AMD64 = HostInfo(os="linux", kernel="test", architecture="amd64", cgroup="v2",
                       accelerator=AcceleratorVerdict(accelerator="kvm", candidate="kvm", reason="booted"))
DARWIN_ARM64 = HostInfo(os="darwin", kernel="test", architecture="arm64",
                        accelerator=AcceleratorVerdict(accelerator="hvf", candidate="hvf", reason="booted"))


def hostrt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostrt", *args], capture_output=True, text=True, timeout=60)


def test_cross_product_keeps_impossible_cells_as_skipped_with_the_reason() -> None:
    spec = cross_product("busybox", ["true"], ["linux/amd64", "linux/arm64"], ["native", "lightvm"])
    cells = plan(spec, LINUX_AMD64)
    assert [(c.name, c.backend, c.accelerator) for c in cells] == [
        ("amd64-native", "native", "none"), ("amd64-vm", "lightvm", "kvm"),
        ("arm64-native", "native", None), ("arm64-vm", "lightvm", "tcg")]
    skipped = cells[2]
    assert skipped.skip_reason and "cannot execute" in skipped.skip_reason and skipped.argv == []
    assert cells[0].argv[-2:] == ["busybox", "true"] and ["--backend", "native"] == cells[0].argv[-4:-2]
    assert len({c.lane for c in cells}) == 4, "different machines and native cells run in parallel lanes"


def test_auto_backend_is_what_run_would_choose_on_each_host() -> None:
    spec = cross_product("busybox", [], ["linux/amd64", "linux/arm64"], ["auto"])
    assert [(c.name, c.backend) for c in plan(spec, LINUX_AMD64)] == [("amd64-native", "native"), ("arm64-vm", "lightvm")]
    assert [(c.name, c.backend, c.accelerator) for c in plan(spec, DARWIN_ARM64)] == [
        ("amd64-vm", "lightvm", "tcg"), ("arm64-vm", "lightvm", "hvf")]


def test_cells_of_one_machine_share_a_lane_and_duplicates_are_numbered() -> None:
    spec = cross_product("busybox", [], ["linux/arm64", "linux/arm64"], ["auto"])
    cells = plan(spec, LINUX_AMD64)
    assert [c.name for c in cells] == ["arm64-vm-1", "arm64-vm-2"]
    assert cells[0].lane == cells[1].lane == "default-arm64"


def test_matrix_file_resolves_volumes_against_its_directory(tmp_path: Path) -> None:
    (tmp_path / "matrix.yaml").write_text(
        "image: busybox\ncommand: cat /src/VERSION\nvolumes: ['.:/src:ro']\nworkdir: /src\n"
        "cells:\n  - platform: linux/amd64\n  - platform: linux/arm64\n    name: arm\n    command: [uname, -m]\n")
    spec = load_file(tmp_path / "matrix.yaml")
    assert spec.volumes == [f"{tmp_path}:/src:ro"]
    cells = plan(spec, LINUX_AMD64)
    assert cells[0].argv[-4:] == ["busybox", "sh", "-c", "cat /src/VERSION"]
    assert ["--volume", f"{tmp_path}:/src:ro"] == cells[0].argv[cells[0].argv.index("--volume"):][:2]
    assert cells[1].name == "arm" and cells[1].argv[-3:] == ["busybox", "uname", "-m"]


def _results() -> list[CellResult]:
    def cell(name: str, skip: str | None = None) -> Cell:
        return Cell(name=name, platform="linux/amd64", backend="native", accelerator="none", lane=name,
                    argv=[] if skip else ["--rm", "busybox"], skip_reason=skip)

    return [CellResult(cell=cell("a"), status="passed", exit_code=0, seconds=1.5, stdout="x\n", matched=True),
            CellResult(cell=cell("b"), status="failed", exit_code=3, seconds=2.0, stdout="y\n", stderr="bad <&>\n",
                       matched=False),
            CellResult(cell=cell("c", skip="cannot run here"), status="skipped")]


def test_junit_and_json_reports_parse_and_count() -> None:
    suites = ET.fromstring(junit("busybox", _results()))
    suite = suites.find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["b"].find("failure").get("message") == "exit code 3"  # type: ignore[union-attr]
    assert "bad <&>" in cases["b"].find("failure").text  # type: ignore[union-attr,operator]
    assert cases["c"].find("skipped") is not None and cases["a"].find("failure") is None
    report = json.loads(as_json("busybox", _results()))
    assert report["failed"] == 1 and [c["status"] for c in report["cells"]] == ["passed", "failed", "skipped"]
    text = table(_results())
    assert "reference" in text and "differs" in text and "skipped: cannot run here" in text
    assert text.splitlines()[-1] == "1 of 2 cells passed, 1 skipped; failed: b"


@pytest.mark.parametrize(("args", "named"), [
    (["matrix", "--platform", "windows/amd64", "busybox", "true"], "no cell of this matrix can run here"),
    (["matrix", "--backend", "hyperv", "--platform", "linux/amd64", "busybox"], "'hyperv'"),
    (["matrix"], "needs an IMAGE"),
    (["matrix", "--file", "/nonexistent/matrix.yaml"], "cannot read matrix file"),
])
def test_matrix_mistakes_are_one_line_and_exit_125(args: list[str], named: str) -> None:
    done = hostrt(*args)
    assert done.returncode == 125, done.stderr
    assert done.stderr.startswith("hostrt: error: ") and named in done.stderr.splitlines()[0]
    assert "Traceback" not in done.stderr
