"""Reading host facts: cgroup layouts from real mountinfo text, arch names, the accelerator cache."""

from __future__ import annotations

import platform as stdlib_platform
from pathlib import Path

import pytest

from hostrt.accelerator import CachedVerdict, cached_probe, read_verdict, write_verdict
from hostrt.platform import AcceleratorVerdict, _cgroup_layout, detect_host, normalise_arch, unprobed_accelerator

pytestmark = pytest.mark.portable

# Lines as the kernel writes them in /proc/self/mountinfo.
V1_CPU = "30 25 0:26 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu\n"
V1_MEMORY = "31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
V2_UNIFIED = "26 25 0:28 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V2_ROOT = "25 24 0:28 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
PROC = "22 1 0:20 / /proc rw,nosuid shared:5 - proc proc rw\n"


@pytest.mark.parametrize(
    ("mounts", "layout"),
    [
        (PROC + V2_ROOT, "v2"),
        (PROC + V1_CPU + V1_MEMORY + V2_UNIFIED, "hybrid"),
        (PROC + V1_CPU + V1_MEMORY, "v1"),
        (PROC, "none"),
    ],
)
def test_cgroup_layout_from_mountinfo(tmp_path: Path, mounts: str, layout: str) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(mounts)
    assert _cgroup_layout(mountinfo) == layout


def test_cgroup_layout_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert _cgroup_layout(tmp_path / "absent") == "none"


@pytest.mark.parametrize(
    ("machine", "expected"),
    [("x86_64", ("amd64", None)), ("AMD64", ("amd64", None)), ("aarch64", ("arm64", None)),
     ("armv7l", ("arm", "v7")), ("i686", ("386", None)), ("riscv64", ("riscv64", None))],
)
def test_machine_names_map_to_oci(machine: str, expected: tuple[str, str | None]) -> None:
    assert normalise_arch(machine) == expected


def test_detect_host_reports_this_machine() -> None:
    host = detect_host()
    assert host.architecture == normalise_arch(stdlib_platform.machine())[0]
    assert host.kernel == stdlib_platform.release()
    assert host.accelerator.accelerator in ("unprobed", "tcg")


def test_cached_verdict_is_used_only_for_the_same_host(tmp_path: Path) -> None:
    verdict = AcceleratorVerdict(accelerator="tcg", candidate="kvm", reason="kvm guest hung after real-mode setup")
    write_verdict(tmp_path, CachedVerdict(host_os="linux", kernel="6.1.0", architecture="amd64", verdict=verdict))
    assert read_verdict(tmp_path, "linux", "6.1.0", "amd64") == verdict
    assert read_verdict(tmp_path, "linux", "6.2.0", "amd64") is None, "a new kernel invalidates the verdict"
    assert cached_probe(tmp_path, "6.1.0")("linux", "amd64") == verdict
    assert cached_probe(tmp_path, "6.2.0")("linux", "amd64") == unprobed_accelerator("linux", "amd64")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".accelerator-")], "no temp file left"


def test_corrupt_cache_reads_as_unprobed(tmp_path: Path) -> None:
    (tmp_path / "accelerator.json").write_text("{not json")
    assert read_verdict(tmp_path, "linux", "6.1.0", "amd64") is None


def test_unprobed_names_no_accelerator_it_has_not_seen_work() -> None:
    verdict = unprobed_accelerator("darwin", "arm64")
    assert verdict.accelerator == "unprobed"
    assert verdict.candidate == "hvf"
    assert unprobed_accelerator("freebsd", "amd64").accelerator == "tcg"
