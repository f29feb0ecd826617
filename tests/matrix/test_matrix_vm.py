"""`hostrt matrix` end to end: real cells, a native amd64 container and an arm64 machine (libvirt +
QEMU under TCG here), through the CLI. One hostrt root for the module: the arm64 machine boots once."""

from __future__ import annotations

import json
import platform
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.conftest import Hostrt
from tests.lightvm.conftest import DRIVERS, MACHINE_TESTS, machine_root

pytestmark = [
    *MACHINE_TESTS,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the cells are native amd64 and an emulated arm64 guest"),
]

# Prints the CPU, then fails where it is not x86_64: the arm64 cell is the failing one.
ONLY_AMD64 = ["sh", "-c", "uname -m; test $(uname -m) = x86_64"]
TWO_CELLS = ["--platform", "linux/amd64,linux/arm64"]


@pytest.fixture(scope="module", params=DRIVERS)
def matrix_hostrt(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, guest_cache: Path,
                  apt_arch) -> Iterator[Hostrt]:  # type: ignore[no-untyped-def]
    apt_arch("arm64")
    yield from machine_root(tmp_path_factory, guest_cache, "matrix-root", request.param)


def test_two_cells_one_failing_as_json(matrix_hostrt: Hostrt) -> None:
    done = matrix_hostrt("matrix", *TWO_CELLS, "--format", "json", "busybox", *ONLY_AMD64, timeout=1800)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["image"] == "busybox" and report["failed"] == 1
    cells = {c["name"]: c for c in report["cells"]}
    assert list(cells) == ["amd64-native", "arm64-vm"]
    native, vm = cells["amd64-native"], cells["arm64-vm"]
    assert (native["status"], native["exit_code"], native["stdout"], native["backend"], native["accelerator"]) == (
        "passed", 0, "x86_64\n", "native", "none")
    assert (vm["status"], vm["exit_code"], vm["stdout"], vm["backend"], vm["accelerator"]) == (
        "failed", 1, "aarch64\n", "lightvm", "tcg"), vm["stderr"]
    assert (native["output_matches_first"], vm["output_matches_first"]) == (True, False)
    assert native["seconds"] > 0 and vm["seconds"] > 0
    assert "arm64-vm: failed (exit 1" in done.stderr, "progress is reported per cell on stderr"


def test_junit_shows_the_failing_cell(matrix_hostrt: Hostrt) -> None:
    done = matrix_hostrt("matrix", *TWO_CELLS, "--format", "junit", "busybox", *ONLY_AMD64, timeout=1800)
    assert done.returncode == 1, done.stderr
    suite = ET.fromstring(done.stdout).find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["amd64-native"].find("failure") is None
    failure = cases["arm64-vm"].find("failure")
    assert failure is not None and failure.get("message") == "exit code 1"
    assert cases["arm64-vm"].findtext("system-out") == "aarch64\n"
    props = {p.get("name"): p.get("value") for p in cases["arm64-vm"].iter("property")}
    assert props == {"platform": "linux/arm64", "backend": "lightvm", "accelerator": "tcg"}


def test_matrix_file_runs_a_mounted_working_tree_in_every_cell(matrix_hostrt: Hostrt, tmp_path: Path) -> None:
    tree = tmp_path / "repo"  # below /tmp, which machines share with their guests
    tree.mkdir()
    (tree / "VERSION").write_text("1.2.3\n")
    (tree / "check.sh").write_text("cat VERSION\n")
    (tree / "matrix.yaml").write_text(
        "image: busybox\nvolumes: ['.:/src:ro']\nworkdir: /src\ncommand: sh check.sh\n"
        "cells:\n  - platform: linux/amd64\n  - platform: linux/arm64\n  - platform: linux/arm64\n"
        "    backend: native\n")
    done = matrix_hostrt("matrix", "--file", str(tree / "matrix.yaml"), timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()[1:-1]}
    assert lines["amd64-native"].split()[1:4] == ["linux/amd64", "native", "none"]
    assert lines["amd64-native"].endswith("reference")
    assert lines["arm64-vm"].split()[1:5] == ["linux/arm64", "lightvm", "tcg", "0"] and lines["arm64-vm"].endswith("same")
    assert "skipped: --backend native cannot run linux/arm64" in lines["arm64-native"]
    assert done.stdout.splitlines()[-1] == "2 of 2 cells passed, 1 skipped"


def test_explain_and_info_show_the_measured_starts(matrix_hostrt: Hostrt) -> None:
    explain = matrix_hostrt.ok("run", "--explain", "--platform", "linux/arm64", "busybox", "true")
    assert "backend: lightvm (qemu-system-aarch64, tcg)" in explain
    assert "machine: default-arm64, warm: running" in explain
    assert "expected start: warm start " in explain and "not measured" not in explain, explain
    native = matrix_hostrt.ok("run", "--explain", "busybox", "true")
    assert "machine: none (a native container" in native
    machines = {m["name"]: m for m in json.loads(matrix_hostrt.ok("info", "--format", "json"))["machines"]}
    arm = machines["default-arm64"]
    assert arm["state"] == "warm" and arm["arch"] == "arm64"
    assert arm["boot"]["samples"] >= 1 and arm["cold"]["samples"] >= 1 and arm["warm"]["samples"] >= 2
    assert 0 < arm["warm"]["seconds"] < arm["cold"]["seconds"], "a warm start costs less than a cold one"
