"""The `hostrt` command as a user runs it: version, info, errors and exit codes, start-up imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hostrt import __version__

pytestmark = pytest.mark.portable

HEAVY_MODULES = ("requests", "paramiko", "libvirt")


def hostrt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostrt", *args], capture_output=True, text=True, timeout=60)


def test_version() -> None:
    done = hostrt("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"hostrt version {__version__}"


def test_info_json_reports_host_and_backends() -> None:
    done = hostrt("info", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    host = report["host"]
    assert host["os"] in ("linux", "darwin", "windows")
    assert host["architecture"] and host["kernel"]
    assert host["cgroup"] in ("v1", "v2", "hybrid", "none")
    assert host["accelerator"]["accelerator"] in ("kvm", "hvf", "whpx", "tcg", "unprobed")
    assert host["accelerator"]["reason"]
    backends = {b["name"]: b for b in report["backends"]}
    assert set(backends) == {"native", "lightvm"}
    assert all(b["reasons"] for b in backends.values()), "usable or not, each backend says why"


def test_info_text_names_each_backend() -> None:
    done = hostrt("info")
    assert done.returncode == 0, done.stderr
    assert "native:" in done.stdout and "lightvm:" in done.stdout
    assert "Accelerator:" in done.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["info", "--format", "xml"], "'xml'"),
        (["no-such-command"], "no-such-command"),
        (["info", "--no-such-flag"], "--no-such-flag"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_125(args: list[str], named: str) -> None:
    done = hostrt(*args)
    assert done.returncode == 125
    first_line = done.stderr.splitlines()[0]
    assert first_line.startswith("hostrt: error: ") and named in first_line
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [["--version"], ["info", "--format", "json"], ["ps", "-a"]])
def test_fast_commands_import_no_heavy_modules(argv: list[str]) -> None:
    probe = (
        "import contextlib, io, sys\n"
        "from hostrt.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main({argv!r})\n"
        f"print(code, [m for m in {HEAVY_MODULES!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(None, 1) == ["0", "[]\n"]


def test_help_lists_only_working_commands() -> None:
    done = hostrt("--help")
    assert done.returncode == 0
    assert "info" in done.stdout
    assert "not implemented" not in done.stdout.lower()


@pytest.mark.parametrize(
    "command",
    [["run"], ["create"], ["ps"], ["logs"], ["exec"], ["inspect"], ["pull"], ["push"], ["images"], ["image", "build"],
     ["machine", "init"], ["machine", "ssh"], ["network", "create"], ["system", "prune"], ["system", "df"], ["port"],
     ["cp"], ["top"], ["matrix"], ["bench", "compare"]],
)
def test_every_command_has_working_help(command: list[str]) -> None:
    done = hostrt(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and "Traceback" not in done.stderr
