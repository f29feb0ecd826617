"""Suite-wide fixtures: every test runs against a temporary hostrt root, never the user's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_hostrt_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path_factory.mktemp("hostrt-root")
    monkeypatch.setenv("HOSTRT_ROOT", str(root))
    monkeypatch.delenv("HOSTRT_RUN_ROOT", raising=False)
    return root
