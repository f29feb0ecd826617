"""The host-OS matrix workflow cannot run here; what can be checked here is checked.

It parses, it covers ubuntu, macOS and Windows, the commands it runs exist in this
repository, and the marker it selects picks real tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.portable

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "host-matrix.yml"


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _run_lines() -> list[str]:
    return [step["run"] for job in _workflow()["jobs"].values() for step in job["steps"] if "run" in step]


def test_workflow_covers_three_host_operating_systems() -> None:
    matrix = _workflow()["jobs"]["portable"]["strategy"]["matrix"]
    assert {os.split("-")[0] for os in matrix["os"]} == {"ubuntu", "macos", "windows"}


def test_scripts_the_workflow_calls_exist() -> None:
    called = [word.lstrip("./") for line in _run_lines() for word in line.split() if word.startswith("./")]
    assert called, "the workflow runs the repository's own scripts"
    for script in called:
        path = REPO / script
        assert path.is_file() and path.stat().st_mode & 0o111, f"{script} is missing or not executable"


def test_portable_marker_selects_tests() -> None:
    assert any("-m portable" in line for line in _run_lines())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "portable", str(REPO / "tests")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    selected = [line for line in done.stdout.splitlines() if "::" in line]
    assert len(selected) >= 20
    assert any("test_decision.py" in line for line in selected)


def test_ci_run_is_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci_run = (REPO / ".ci" / "run").read_text()
    assert "exec ./ci/test" in ci_run
    assert "sudo ./ci/test" in readme
