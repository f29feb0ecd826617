"""Pure parts of rootless mode: no user, no namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostrt import paths, rootless
from hostrt.rootless import idmaps


@pytest.mark.parametrize("environ", [
    {"HOSTRT_RUN_ROOT": "/x/run"}, {"HOSTRT_ROOT": "/x"}, {"XDG_RUNTIME_DIR": "/run/user/7"}, {}])
def test_holder_directory_is_in_the_run_root(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    for key in ("HOSTRT_RUN_ROOT", "HOSTRT_ROOT", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(paths, "_is_root", lambda: False)
    assert rootless.state_dir() == str(paths.run_root() / "rootless")


def test_subordinate_ranges_by_name_or_number(tmp_path: Path) -> None:
    table = tmp_path / "subuid"
    table.write_text("alice:100000:65536\n1000:300000:10\nbob:200000:65536\nalice:500000:0\nbroken\n")
    assert idmaps.read_ranges(str(table), "alice", 1000) == (idmaps.Range(100000, 65536), idmaps.Range(300000, 10))
    assert idmaps.read_ranges(str(table), None, 1001) == ()


def test_newuidmap_arguments_follow_the_ranges_in_order() -> None:
    ranges = (idmaps.Range(100000, 10), idmaps.Range(200000, 5))
    assert idmaps._triples(1000, ranges) == ["0", "1000", "1", "1", "100000", "10", "11", "200000", "5"]
