"""Where state goes: HOSTRT_ROOT wins, root uses FHS paths, users use XDG."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostrt import paths

pytestmark = pytest.mark.portable


def test_hostrt_root_moves_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTRT_ROOT", str(tmp_path))
    layout = paths.Paths.default()
    assert layout.root == tmp_path
    assert layout.run == tmp_path / "run"
    assert layout.store.is_relative_to(tmp_path) and layout.runtime_state.is_relative_to(tmp_path)


def test_root_user_gets_fhs_locations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTRT_ROOT")
    monkeypatch.setattr(paths, "_is_root", lambda: True)
    monkeypatch.setattr(paths.sys, "platform", "linux")
    assert paths.data_root() == Path("/var/lib/hostrt")
    assert paths.run_root() == Path("/run/hostrt")


def test_other_users_get_xdg_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTRT_ROOT")
    monkeypatch.setattr(paths, "_is_root", lambda: False)
    monkeypatch.setattr(paths.sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-run"))
    assert paths.data_root() == tmp_path / "data" / "hostrt"
    assert paths.run_root() == tmp_path / "xdg-run" / "hostrt"


def test_windows_users_get_local_app_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTRT_ROOT")
    monkeypatch.setattr(paths, "_is_root", lambda: False)
    monkeypatch.setattr(paths.sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))
    assert paths.data_root() == tmp_path / "hostrt"


def test_nothing_is_created_by_asking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTRT_ROOT", str(tmp_path / "fresh"))
    paths.Paths.default().store
    assert not os.path.exists(tmp_path / "fresh")
