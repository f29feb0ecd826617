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
        assert path.is_file() and _executable(script), f"{script} is missing or not executable"


def _executable(script: str) -> bool:
    """The executable bit as git keeps it (Windows' file system has none to stat)."""
    try:
        staged = subprocess.run(["git", "ls-files", "--stage", "--", script], capture_output=True, text=True,
                                timeout=30, cwd=REPO).stdout
    except OSError:
        staged = ""
    if staged:
        return staged.split()[0] == "100755"
    return bool((REPO / script).stat().st_mode & 0o111)


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


def _hostrt_commands() -> list[list[str]]:
    """The `hostrt` subcommands (words before the first option) that the workflow's steps run."""
    found = []
    for line in "\n".join(_run_lines()).splitlines():
        words = line.split()
        for index, word in enumerate(words):
            if word == "hostrt" or word.endswith("/hostrt"):
                found.append([w for w in words[index + 1:index + 3] if not w.startswith("-")][:2])
    return found


def test_hostrt_commands_the_workflow_runs_exist() -> None:
    commands = _hostrt_commands()
    assert ["matrix"] in [c[:1] for c in commands] and ["machine", "init"] in commands
    for command in commands:
        # `image build DIR`, `machine init NAME`: only the words that name a command group are kept.
        words = command if command[:1] in (["image"], ["machine"]) else command[:1]
        done = subprocess.run([sys.executable, "-m", "hostrt", *words, "--help"], capture_output=True, text=True,
                              timeout=60, cwd=REPO)
        assert done.returncode == 0 and "Usage:" in done.stdout, f"hostrt {' '.join(words)}: {done.stderr}"


def test_the_matrix_file_the_workflow_uses_plans_its_cells() -> None:
    from hostrt.matrix.cells import load_file, plan
    from hostrt.platform import AcceleratorVerdict, HostInfo

    assert any("--file ci/matrix.yaml" in line for line in _run_lines())
    spec = load_file(REPO / "ci" / "matrix.yaml")
    assert spec.volumes == [f"{(REPO / 'ci').resolve()}:/src:ro"]
    runner = HostInfo(os="linux", kernel="runner", architecture="amd64", cgroup="v2",
                      accelerator=AcceleratorVerdict(accelerator="kvm", candidate="kvm", reason="booted"))
    cells = plan(spec, runner)
    assert [(c.name, c.backend, c.skip_reason) for c in cells] == [
        ("amd64-native", "native", None), ("amd64-vm", "lightvm", None), ("arm64-vm", "lightvm", None)]
    jobs = _workflow()["jobs"]
    assert "ubuntu" in jobs["cells"]["runs-on"]
