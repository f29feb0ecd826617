"""A real unprivileged user that can run this checkout's hostrt, for the rootless tests.

The checkout and its .venv may sit where another user cannot go (/root is 0700, and the
venv's python may be a link into /root/.pyenv), so the user gets its own install:
- the dependencies in a venv of the distribution's /usr/bin/python3, made with pip once and
  kept under /var/tmp by the hash of the dependency list and that Python's version;
- per session, a bare venv (no pip, ~50 ms) whose site-packages has a copy of `hostrt/` and
  `backends/`, a .pth line to the dependencies, `bin/hostrt` and `bin/hostrt-runtime`.
Everything is root-owned and world-readable; the user writes only to its HOME and
XDG_RUNTIME_DIR (0700).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HOSTRT_ROOTLESS_CACHE", "/var/tmp/hostrt-rootless"))
SYSTEM_PYTHON = "/usr/bin/python3"
DEPENDENCIES = ["typer>=0.29", "pydantic>=2.14", "requests>=2.34", "paramiko>=5.1", "rich>=15.0",
                "zstandard>=0.25", "pyyaml>=6.0", "libvirt-python>=12.8"]  # compiled once per cache key


def _python_version(python: str) -> str:
    return subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True,
                          check=True).stdout.strip()


def dependencies_venv(python: str = SYSTEM_PYTHON) -> Path:
    """A venv of `python` with hostrt's dependencies, made once per dependency list."""
    key = hashlib.sha256(("\n".join(DEPENDENCIES) + _python_version(python)).encode()).hexdigest()[:16]
    venv = CACHE / f"deps-{key}"
    if (venv / ".complete").exists():
        return venv
    CACHE.mkdir(mode=0o755, parents=True, exist_ok=True)
    building = CACHE / f".deps-{key}.{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(building)], check=True, capture_output=True)
    done = subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           *DEPENDENCIES], capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        raise RuntimeError(f"pip install of hostrt's dependencies failed: {done.stderr.strip()[-400:]}")
    try:
        building.rename(venv)  # a venv records its own path: it is used only through its site-packages
    except OSError:
        shutil.rmtree(building, ignore_errors=True)  # another session finished first
    (venv / ".complete").touch()
    return venv


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def install(destination: Path, python: str = SYSTEM_PYTHON) -> Path:
    """A venv at `destination` that runs this checkout's code; returns its bin directory."""
    deps = dependencies_venv(python)
    subprocess.run([python, "-m", "venv", "--without-pip", str(destination)], check=True, capture_output=True)
    site = _site_packages(destination)
    (site / "hostrt-deps.pth").write_text(f"{_site_packages(deps)}\n")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    source = Path(os.environ.get("HOSTRT_ROOTLESS_SOURCE") or REPO)  # another checkout's code, to compare
    for package in ("hostrt", "backends", "images"):  # images/: the busybox and guest recipes
        shutil.copytree(source / package, site / package, ignore=ignore)
    bin_dir = destination / "bin"
    shutil.copy(source / "bin" / "hostrt-runtime", bin_dir / "hostrt-runtime")
    (bin_dir / "hostrt").write_text(f"#!{bin_dir / 'python3'}\nimport sys\nfrom hostrt.__main__ import main\nsys.exit(main())\n")
    for path in [destination, *destination.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or path.parent == bin_dir else 0o644)
    return bin_dir


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path
    runtime_dir: Path


def _drop_subids(name: str, uid: int) -> None:
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            lines = Path(path).read_text().splitlines()
        except FileNotFoundError:
            continue
        kept = [line for line in lines if line.split(":")[0] not in (name, str(uid))]
        Path(path).write_text("".join(f"{line}\n" for line in kept))


def _free_range(count: int) -> int:
    """A subordinate range no entry of /etc/subuid or /etc/subgid overlaps."""
    used = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            for line in Path(path).read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    used.append((int(parts[1]), int(parts[1]) + int(parts[2])))
        except FileNotFoundError:
            pass
    start = 300000
    while any(a < start + count and start < b for a, b in used):
        start += count
    return start


def make_user(name: str, subids: int | None) -> User:
    """The user `name` (made if absent) with `subids` subordinate uids/gids, or none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True, capture_output=True)
        entry = pwd.getpwnam(name)
    _drop_subids(name, entry.pw_uid)
    if subids:
        start = _free_range(subids)
        for path in ("/etc/subuid", "/etc/subgid"):
            with open(path, "a") as f:
                f.write(f"{name}:{start}:{subids}\n")
    home = Path(entry.pw_dir)
    home.chmod(0o700)
    temp = home / "tmp"  # TMPDIR: apt (guest image builds) needs one, and /tmp may not be writable
    temp.mkdir(mode=0o700, exist_ok=True)
    os.chown(temp, entry.pw_uid, entry.pw_gid)
    runtime_dir = Path(f"/run/user/{entry.pw_uid}")
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(runtime_dir, entry.pw_uid, entry.pw_gid)
    runtime_dir.chmod(0o700)
    return User(name, entry.pw_uid, entry.pw_gid, home, runtime_dir)


def holder_pids(user: User) -> list[int]:
    """The user's rootless namespace holders (hostrt/rootless/holder.py), by their argv."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid == user.uid and (proc / "cmdline").read_bytes().startswith(b"hostrt-rootless-pause\0"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def user_environment(user: User, bin_dir: Path) -> dict[str, str]:
    return {"HOME": str(user.home), "USER": user.name, "LOGNAME": user.name, "XDG_RUNTIME_DIR": str(user.runtime_dir),
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
            "HOSTRT_DNS": "", "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(user.home / "tmp")}


def run_as(user: User, command: list[str], env: dict[str, str], timeout: float = 120, cwd: str | None = None,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`command` run by `user` (setpriv: no capability, no supplementary group of root's kept)."""
    return subprocess.run(["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--reset-env",
                           "--", "env", *(f"{k}={v}" for k, v in env.items()), *command],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or str(user.home), input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)


if __name__ == "__main__":  # manual use: python -m tests.rootless.user_env NAME DEST
    made = make_user(sys.argv[1], 65536)
    print(install(Path(sys.argv[2])), made)
