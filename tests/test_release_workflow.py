"""The guest release workflow cannot run here (no GitHub, no ghcr.io); what can be checked here is.

It parses, can write packages and pull requests, every `hostrt` command and option it runs
exists, the scripts it calls exist, and `ci/pin-guest` rewrites guest_release.py into a module
that pins the new digest (or refuses and leaves the file alone). The build, push, pull-by-digest
and pinned pull it performs run against a local registry in tests/lightvm/test_guest_release.py.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.portable

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "release-guest.yml"
PIN = REPO / "ci" / "pin-guest"
RELEASE = REPO / "backends" / "lightvm" / "guest_release.py"
NEW_DIGEST = "sha256:" + "ab" * 32


def _steps() -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["release"]["steps"]


def _run_lines() -> list[str]:
    return [line for step in _steps() if "run" in step for line in step["run"].splitlines()]


def test_workflow_publishes_and_proposes_the_pin() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["permissions"] == {"contents": "write", "packages": "write", "pull-requests": "write"}
    assert "workflow_dispatch" in workflow[True]  # YAML 1.1 reads the key `on` as True
    runs = "\n".join(_run_lines())
    assert "./ci/pin-guest" in runs and "gh pr create" in runs
    assert re.search(r'hostrt pull .*"\$REPOSITORY@\$DIGEST"', runs), "the pushed index is pulled back by digest"


def test_hostrt_commands_and_options_the_workflow_runs_exist() -> None:
    used = []
    for line in _run_lines():
        words = line.replace('"', " ").split()
        for index, word in enumerate(words):
            if word.endswith("/hostrt") or (word == "hostrt" and words[index - 1] == "-m"):
                rest = words[index + 1:]
                command = rest[:2] if rest[0] == "machine" else rest[:1]
                used.append((command, [w.split("=")[0] for w in rest if w.startswith("--")]))
    assert {" ".join(c) for c, _ in used} == {"machine image", "login", "push", "pull", "machine init"}
    for command, options in used:
        words = command + (["build"] if command == ["machine", "image"] else [])
        done = subprocess.run([sys.executable, "-m", "hostrt", *words, "--help"], capture_output=True, text=True,
                              timeout=60, cwd=REPO)
        assert done.returncode == 0, done.stderr
        for option in options:
            assert option in done.stdout, f"hostrt {' '.join(words)} has no {option}"


def test_scripts_the_workflow_calls_exist() -> None:
    called = {word.strip('"') for line in _run_lines() for word in line.split() if word.startswith(("./", "sudo ./"))}
    assert called == {"./ci/setup", "./ci/pin-guest"}
    for script in called:
        path = REPO / script
        assert path.is_file() and path.stat().st_mode & 0o111, script


def _load(path: Path):  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location("pinned_release", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pin_guest_writes_a_module_that_pins_the_new_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTRT_GUEST_REGISTRY", raising=False)
    copy = tmp_path / "guest_release.py"
    copy.write_text(RELEASE.read_text())
    done = subprocess.run([sys.executable, str(PIN), "ghcr.io/acme/guest", NEW_DIGEST, "release 1, run 42", str(copy)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["guest_release.py"], "no temporary file left"
    pinned = _load(copy)
    assert (pinned.REPOSITORY, pinned.DIGEST) == ("ghcr.io/acme/guest", NEW_DIGEST)
    assert "# Pinned from: release 1, run 42\n" in copy.read_text()
    assert pinned.pinned_reference() == f"ghcr.io/acme/guest@{NEW_DIGEST}"


@pytest.mark.parametrize("args", [
    pytest.param(["ghcr.io/acme/guest", "sha256:abc", "x"], id="short-digest"),
    pytest.param(["ghcr.io/acme/guest:v1", NEW_DIGEST, "x"], id="tagged-repository"),
    pytest.param(['ghcr.io/acme/gu"est', NEW_DIGEST, "x"], id="quote"),
    pytest.param(["ghcr.io/acme/guest", NEW_DIGEST, "two\nlines"], id="two-line-source"),
])
def test_pin_guest_refuses_malformed_input_and_leaves_the_file(tmp_path: Path, args: list[str]) -> None:
    copy = tmp_path / "guest_release.py"
    copy.write_text(RELEASE.read_text())
    done = subprocess.run([sys.executable, str(PIN), *args, str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("pin-guest: "), done.stderr
    assert copy.read_text() == RELEASE.read_text()
