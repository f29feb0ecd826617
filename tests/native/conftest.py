"""Fixtures for the native runtime: busybox bundles built from /bin/busybox (busybox-static),
a private --root per test, and a cleanup that deletes whatever a test left running and
checks no cgroup was left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backends.linux_native.default_spec import default_spec

BUSYBOX = "/bin/busybox"
RUNTIME = [str(Path(sys.executable).with_name("hostrt-runtime"))]
if not os.path.exists(RUNTIME[0]):
    RUNTIME = [sys.executable, "-m", "backends.linux_native"]


def cgroup2_root() -> str | None:
    """Where a cgroup2 hierarchy is mounted (the root on v2, /sys/fs/cgroup/unified on hybrid)."""
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    return None


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (namespaces, mounts, cgroups)"
    if not os.path.exists(BUSYBOX):
        return "needs /bin/busybox (apt-get install busybox-static)"
    if not os.path.isdir("/sys/fs/cgroup"):
        return "needs a cgroup file system"
    return None


_NEEDS_ROOT = {"rt", "bundle", "containerd", "open_dir"}


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    for item in items:
        if "tests/native" not in str(item.fspath):
            continue
        if _NEEDS_ROOT & set(getattr(item, "fixturenames", ())) or item.fspath.basename == "test_cgroup_v2.py":
            item.add_marker(pytest.mark.root)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _remove_empty_cgroup_parents():
    """Containers' cgroups go on delete; their parents (hostrt-runtime/, hostrt-test/) are
    removed here once every test is done, if empty (rmdir refuses otherwise)."""
    yield
    import glob

    for pattern in ("/sys/fs/cgroup/*/hostrt-runtime", "/sys/fs/cgroup/*/hostrt-test",
                    "/sys/fs/cgroup/*/*/*/hostrt-runtime", "/sys/fs/cgroup/hostrt-runtime", "/sys/fs/cgroup/hostrt-test"):
        for path in glob.glob(pattern):
            try:
                os.rmdir(path)
            except OSError:
                pass


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory) -> Path:
    """A busybox root file system, built once; bundles hard-link it."""
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "var", "usr"):
        (root / d).mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "sbin").symlink_to("bin")
    (root / "usr" / "bin").symlink_to("../bin")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    os.chmod(root / "tmp", 0o1777)
    return root


class Runtime:
    """Runs hostrt-runtime with a private --root and --log. The methods below __call__ are
    what a test reads besides the runtime's output; tests/native/guest.py has the same
    ones for the cgroup v2 guest, so a `cgroups` test body runs unchanged in both."""

    where = "host"

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.log = log
        self.output = log.with_name("container.out")

    def __call__(self, *args: str, check: bool = True, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        cmd = [*RUNTIME, "--root", str(self.root), "--log", str(self.log), "--log-format", "json", *args]
        if args[0] == "create" or (args[0] in ("run", "exec") and ("-d" in args or "--detach" in args)):
            # A detached container keeps the runtime's stdio: give it files, not our pipes.
            with open(self.output, "a") as out:
                proc = subprocess.run(cmd, text=True, timeout=timeout, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs)
            proc.stdout = proc.stderr = self.output.read_text()
        else:
            kwargs.setdefault("capture_output", True)
            proc = subprocess.run(cmd, text=True, timeout=timeout, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} -> {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def ids(self) -> list[str]:
        return self("list", "-q").stdout.split()

    def saved(self, cid: str) -> dict:
        """The container's state.json."""
        return json.loads((self.root / cid / "state.json").read_text())

    def out(self) -> str:
        """What detached containers wrote."""
        return self.output.read_text() if self.output.exists() else ""

    def read(self, path: str) -> str:
        with open(path) as f:
            return f.read()

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def write(self, path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def spawn(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*RUNTIME, "--root", str(self.root), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def program_exists(self, prog_id: int) -> bool:
        """Whether the kernel still holds the BPF program with this id."""
        from backends.linux_native import syscalls

        attr = bytearray(12)
        attr[0:4] = prog_id.to_bytes(4, "little")
        try:
            os.close(syscalls.bpf(13, attr))  # BPF_PROG_GET_FD_BY_ID
            return True
        except FileNotFoundError:
            return False

    def attached(self, path: str) -> list[int]:
        """Ids of the BPF programs attached to a cgroup2 directory."""
        from backends.linux_native.cgroups import bpf_prog

        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return bpf_prog.attached(fd)
        finally:
            os.close(fd)


@pytest.fixture
def rt(tmp_path, cgroup_env, request):
    """The runtime on this host, or in the cgroup v2 guest for the guest run of a `cgroups` test."""
    if cgroup_env != "host":
        from tests.native.guest import GuestRuntime

        guest_runtime = GuestRuntime(request.getfixturevalue("v2_guest"))
        yield guest_runtime
        guest_runtime.cleanup()
        return
    runtime = Runtime(tmp_path / "state", tmp_path / "runtime.log")
    yield runtime
    leftovers = runtime.ids() if runtime.root.exists() else []
    cgroups = []
    for cid in leftovers:
        data = json.loads((runtime.root / cid / "state.json").read_text())
        cgroups.extend((data.get("cgroup") or {}).get("paths", {}).values())
        runtime("delete", "--force", cid, check=False)
    for path in cgroups:
        assert not os.path.exists(path), f"cgroup {path} left behind"


class BundleFactory:
    def __init__(self, tmp_path: Path, template: Path) -> None:
        self.tmp_path = tmp_path
        self.template = template
        self.count = 0

    def __call__(self, *args: str, readonly: bool = True, copy: bool = False, edit=None, base: Path | None = None) -> Path:
        """A bundle whose process runs ARGS; EDIT(config) may change the config; BASE puts
        it elsewhere than tmp_path (pytest's 0700 directories stop a remapped root)."""
        self.count += 1
        bundle = (base or self.tmp_path) / f"bundle{self.count}"
        bundle.mkdir()
        shutil.copytree(self.template, bundle / "rootfs", symlinks=True, copy_function=shutil.copy2 if copy else os.link)
        config = default_spec(list(args) or ["true"])
        config["root"]["readonly"] = readonly
        config["hostname"] = "hostrt-test"
        if edit:
            edit(config)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle


@pytest.fixture
def bundle(tmp_path, rt, cgroup_env, request):
    """Bundles where `rt` runs them: here, or in the guest."""
    if cgroup_env != "host":
        from tests.native.guest import GuestBundleFactory, guest_rootfs_template

        return GuestBundleFactory(rt, guest_rootfs_template(rt.guest))
    return BundleFactory(tmp_path, request.getfixturevalue("rootfs_template"))


@pytest.fixture
def open_dir():
    """A directory under /tmp that every uid can traverse (for user namespace bundles)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="hostrt-userns-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)
