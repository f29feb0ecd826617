"""The front end imports and answers `hostrt info` on macOS and Windows.

Each module of `hostrt` is imported in a fresh interpreter where `sys.platform` says darwin
or win32 and the Linux/POSIX-only modules (fcntl, resource, termios, pty) cannot be
imported: a module-level use of any of them fails the test.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import hostrt

pytestmark = pytest.mark.portable

POSIX_ONLY = ("fcntl", "resource", "termios", "pty", "grp", "pwd")

# Third-party packages are imported first, under the real platform: their own portability is
# their business (pydantic reads sysconfig data named after the platform); hostrt's is tested.
PRELUDE = (
    "import sys, typer, typing, pydantic, requests, urllib.request\n"
    "class _Warm(pydantic.BaseModel):\n"
    "    field: typing.Literal['a'] | None = pydantic.Field(default=None, description='x')\n"
    "import shutil, types\n"
    "sys.platform = {platform!r}\n"
    "# Python 3.12+'s shutil.which asks _winapi on win32; the stdlib's portability is not under test.\n"
    "if sys.platform == 'win32' and getattr(shutil, '_winapi', False) is None:\n"
    "    shutil._winapi = types.SimpleNamespace(NeedCurrentDirectoryForExePath=lambda name: True)\n"
    "for name in {blocked!r}:\n"
    "    sys.modules[name] = None  # makes `import name` raise ImportError\n"
)


def _all_hostrt_modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(hostrt.__path__, prefix="hostrt.") if info.name != "hostrt.__main__"
    )


def _run_as(platform: str, body: str) -> subprocess.CompletedProcess[str]:
    code = PRELUDE.format(platform=platform, blocked=POSIX_ONLY) + body
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_every_module_imports(platform: str) -> None:
    modules = _all_hostrt_modules()
    assert "hostrt.cli" in modules and "hostrt.platform" in modules
    body = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    done = _run_as(platform, body)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("platform", "host_os"), [("darwin", "darwin"), ("win32", "windows")])
def test_info_runs_and_rules_out_native(platform: str, host_os: str) -> None:
    body = (
        "import json\n"
        "from hostrt.info import gather_info\n"
        "print(json.dumps(gather_info().model_dump(mode='json')))\n"
    )
    done = _run_as(platform, body)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["host"]["os"] == host_os
    assert report["host"]["cgroup"] == "none"
    native = next(b for b in report["backends"] if b["name"] == "native")
    assert native["usable"] is False
    assert "containers need a Linux kernel" in native["reasons"][0]
