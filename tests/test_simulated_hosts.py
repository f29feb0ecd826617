"""The real `hostrt` entry point on simulated macOS (arm64, x86_64) and Windows (AMD64) hosts.

Each run is a subprocess whose Python reports that host and lacks what that host's Python
lacks (tests/support/simhost/sitecustomize.py says what exactly, and where the simulation
ends); its PATH holds a fake `qemu-system-*` that records its command line and then fails as
a QEMU that cannot run a guest here. A local registry serves a two-arch image and a guest
artifact. Linux-only: the simulation bends a Linux Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.simulated_host import PROFILES, Profile, SimulatedHost, publish_test_images, simulated_host

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the simulation bends a Linux Python")

BY_ID = [pytest.param(profile, id=profile.id) for profile in PROFILES]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from tests.images.registry_server import REGISTRY_BIN, start_registry

    if REGISTRY_BIN is None:
        pytest.skip("docker-registry (Debian package docker-registry) is not installed")
    workdir = tmp_path_factory.mktemp("simulated-registry")
    registry = start_registry(workdir / "registry")
    try:
        yield publish_test_images(registry.host, workdir)
    finally:
        registry.stop()


@pytest.fixture(params=BY_ID)
def host(request: pytest.FixtureRequest, tmp_path: Path) -> SimulatedHost:
    return simulated_host(request.param, tmp_path / "host")


def _one_line_error(done: subprocess.CompletedProcess[str], code: int = 125) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hostrt: error: "), done.stderr
    return lines[0]


# -- the simulation itself -----------------------------------------------------------------
FACTS = textwrap.dedent("""
    import json, os, platform, signal, socket, sys
    def imports(name):
        try:
            __import__(name)
            return True
        except ImportError:
            return False
    print(json.dumps({
        "platform": sys.platform, "system": platform.system(), "machine": platform.machine(),
        "release": platform.release(),
        "fcntl": imports("fcntl"), "termios": imports("termios"), "pwd": imports("pwd"), "msvcrt": imports("msvcrt"),
        "os": sorted(n for n in ("fork", "geteuid", "getuid", "fchmod", "getpgid", "setsid", "killpg", "uname",
                                 "memfd_create", "pidfd_open", "O_PATH") if hasattr(os, n)),
        "signals": sorted(n for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGKILL", "SIGUSR1", "SIGWINCH", "SIGBREAK",
                                      "SIGRTMIN") if hasattr(signal, n)),
        "af_unix": hasattr(socket, "AF_UNIX"),
        "proc": os.path.exists("/proc/self/status"),
    }))
""")


@pytest.mark.parametrize("profile", BY_ID)
def test_profiles_report_the_host_and_lack_what_it_lacks(profile: Profile, tmp_path: Path) -> None:
    done = simulated_host(profile, tmp_path).python("-c", FACTS)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert (facts["platform"], facts["machine"]) == tuple(profile.name.split("/"))
    assert facts["proc"] is False  # no Linux kernel files on either
    if profile.windows:
        assert (facts["system"], facts["release"]) == ("Windows", "10")
        assert facts["os"] == [] and facts["af_unix"] is False
        assert facts["signals"] == ["SIGBREAK", "SIGINT", "SIGTERM"]
        assert (facts["fcntl"], facts["termios"], facts["pwd"], facts["msvcrt"]) == (False, False, False, True)
    else:
        assert (facts["system"], facts["release"]) == ("Darwin", "23.4.0")
        assert facts["os"] == ["fchmod", "fork", "geteuid", "getpgid", "getuid", "killpg", "setsid", "uname"]
        assert facts["signals"] == ["SIGHUP", "SIGINT", "SIGKILL", "SIGTERM", "SIGUSR1", "SIGWINCH"]
        assert (facts["fcntl"], facts["termios"], facts["pwd"], facts["msvcrt"], facts["af_unix"]) == (
            True, True, True, False, True)


# Modules only a Linux host or the guest runs; the front end must reach none of them elsewhere.
LINUX_ONLY = (
    "backends.linux_native",  # the runtime: on a Linux host or inside the guest
    "backends.lightvm.guestd",  # the guest's daemon
    "hostrt.server", "hostrt.server_client",  # the engine server: unix sockets, fd passing, POSIX signals
    "hostrt.engine.copy", "hostrt.engine.fdtree",  # `cp` of native containers, through openat2
)

IMPORT_ALL = textwrap.dedent("""
    import importlib, pkgutil, sys, traceback
    import backends, hostrt
    linux_only = {linux_only!r}
    names = [i.name for pkg, prefix in ((hostrt, "hostrt."), (backends, "backends."))
             for i in pkgutil.walk_packages(pkg.__path__, prefix=prefix)]
    failed = []
    for name in sorted(names):
        if name.endswith("__main__") or any(name == m or name.startswith(m + ".") for m in linux_only):
            continue
        try:
            importlib.import_module(name)
        except Exception:
            failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
    print(len(names))
    print("\\n".join(failed))
    sys.exit(1 if failed else 0)
""")


@pytest.mark.parametrize("profile", BY_ID)
def test_every_module_but_the_linux_only_ones_imports(profile: Profile, tmp_path: Path) -> None:
    done = simulated_host(profile, tmp_path).python("-c", IMPORT_ALL.format(linux_only=LINUX_ONLY))
    assert done.returncode == 0, done.stdout + done.stderr
    assert int(done.stdout.split()[0]) > 100


WINDOWS = next(profile for profile in PROFILES if profile.windows)
HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from hostrt.locks import file_lock
    print("waiting", flush=True)
    started = time.monotonic()
    with file_lock(Path(sys.argv[1])):
        print(f"held after {time.monotonic() - started:.2f}", flush=True)
        sys.stdin.readline()
""")


def test_windows_file_lock_is_held_against_other_processes(tmp_path: Path) -> None:
    """hostrt.locks on Windows (msvcrt.locking, a byte-range lock per open file): a second
    process waits until the first lets go."""
    host = simulated_host(WINDOWS, tmp_path)
    lock = tmp_path / "store.lock"
    first = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)], env=host.env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    second = None
    try:
        assert first.stdout is not None and first.stdin is not None
        assert first.stdout.readline() == "waiting\n"
        assert first.stdout.readline().startswith("held after")
        second = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)], env=host.env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert second.stdout is not None and second.stdin is not None
        assert second.stdout.readline() == "waiting\n"
        with pytest.raises(subprocess.TimeoutExpired):
            second.wait(0.8)  # still waiting for the lock (it prints only once it holds it)
        first.stdin.write("\n")
        first.stdin.flush()
        assert first.wait(10) == 0
        waited = float(second.stdout.readline().split()[-1])
        assert waited >= 0.8
        second.stdin.write("\n")
        second.stdin.flush()
        assert second.wait(10) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


# -- the entry point -----------------------------------------------------------------------
def test_version_and_info(host: SimulatedHost) -> None:
    profile = host.profile
    done = host.run("--version")
    assert done.returncode == 0 and done.stdout.startswith("hostrt version "), done.stderr
    done = host.run("info", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["host"]["os"], report["host"]["architecture"], report["host"]["cgroup"]) == (
        profile.host_os, profile.arch, "none")
    assert report["host"]["accelerator"]["candidate"] == profile.accelerator
    backends = {b["name"]: b for b in report["backends"]}
    assert backends["native"]["usable"] is False
    assert backends["native"]["reasons"] == [f"host is {profile.host_os}: containers need a Linux kernel"]
    assert backends["lightvm"]["usable"] is True, backends["lightvm"]
    assert f"{profile.emulator} found" in backends["lightvm"]["reasons"]
    assert any(r.startswith("driver: qemu (") for r in backends["lightvm"]["reasons"])
    text = host.run("info")
    assert text.returncode == 0 and f"OS/Arch:          {profile.host_os}/{profile.arch}" in text.stdout


def test_default_roots_are_the_users(host: SimulatedHost) -> None:
    """Without HOSTRT_ROOT: data under the user's home (XDG's place; LOCALAPPDATA on Windows),
    state under the user's temp directory, both made on first use."""
    del host.env["HOSTRT_ROOT"]
    done = host.run("info", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    home = Path(host.env["HOME"])
    expected = home / "AppData" / "Local" / "hostrt" if host.profile.windows else home / ".local" / "share" / "hostrt"
    assert report["root"] == str(expected)
    temp = host.env["TMPDIR"].rstrip("/")
    assert report["run_root"] == (f"{temp}/hostrt" if host.profile.windows else f"{temp}/hostrt-{os.getuid()}")
    assert host.run("images").returncode == 0 and (expected / "store" / "index.json").is_file()


def test_pull_images_and_explain(host: SimulatedHost, published: dict[str, str]) -> None:
    profile = host.profile
    done = host.run("pull", published["app"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{published['app']}: linux/{profile.arch} sha256:")
    rows = json.loads(host.run("images", "--format", "json").stdout)
    assert [(r["name"], r["platforms"]) for r in rows] == [(published["app"], [f"linux/{profile.arch}"])]
    done = host.run("run", "--explain", published["app"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"image platform: linux/{profile.arch}"
    assert lines[1] == f"backend: lightvm ({profile.emulator}, tcg)"
    assert f"host is {profile.host_os}/{profile.arch}, image is linux/{profile.arch}: a Linux VM is needed" in lines[2]
    assert f"{profile.accelerator} looks available but no guest has booted under it yet" in lines[3]
    other = "amd64" if profile.arch == "arm64" else "arm64"
    done = host.run("run", "--explain", "--platform", f"linux/{other}", published["app"])
    assert done.returncode == 0, done.stderr
    assert f"{other} on {profile.arch} needs TCG emulation" in done.stdout


def test_volumes_as_the_host_spells_them(host: SimulatedHost, published: dict[str, str]) -> None:
    assert host.run("pull", "--quiet", published["app"]).returncode == 0
    data = Path(host.env.get("TMPDIR", str(host.base))) / "data"
    data.mkdir()
    done = host.run("run", "--explain", "-v", f"{data}:/data:ro", published["app"])
    assert done.returncode == 0, done.stderr
    drive = host.run("run", "--explain", "-v", r"C:\no-such-dir:/src", published["app"])
    slashed = host.run("run", "--explain", "-v", "C:/no-such-dir:/src:ro", published["app"])
    if host.profile.windows:  # a drive path, missing on this host
        assert "host path C:\\no-such-dir does not exist" in _one_line_error(drive)
        assert "host path C:/no-such-dir does not exist" in _one_line_error(slashed)
    else:
        assert "mode must be ro or rw" in _one_line_error(drive)


def test_machine_init_and_ls(host: SimulatedHost, published: dict[str, str]) -> None:
    profile = host.profile
    done = host.run("machine", "init", "--image", published["guest"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"machine default created ({profile.arch}, 2 CPUs, 1024 MiB, driver qemu) in ")
    inspected = json.loads(host.run("machine", "inspect", "default").stdout)
    shares = inspected["settings"]["shares"]
    assert shares[0] == str(Path(host.env["HOME"]).resolve())
    if profile.windows:
        assert shares[1] == host.env["TEMP"]
    else:  # $TMPDIR is a link, as /var/folders is: the share is where it leads
        assert shares[1] == str(host.base / "private" / "tmp")
    rows = host.run("machine", "ls").stdout.splitlines()
    assert rows[1].split()[:4] == ["default", profile.arch, "stopped", "qemu"]
    assert host.qemu_calls() == []  # init does not start anything


def test_machine_init_refuses_a_guest_reference_that_is_no_guest(host: SimulatedHost,
                                                                   published: dict[str, str]) -> None:
    line = _one_line_error(host.run("machine", "init", "--image", published["app"]))
    assert "is not a hostrt guest image" in line


def test_machine_init_without_a_guest_asks_for_the_pinned_release(host: SimulatedHost,
                                                                  published: dict[str, str]) -> None:
    """No guest named, no Debian tools: the released guest pinned by digest, here from a mirror
    that holds other guests only (a tag never stands in for the pinned digest)."""
    from backends.lightvm.guest_release import DIGEST, REGISTRY_ENV

    mirror = published["guest"].split("/", 1)[0]
    host.env[REGISTRY_ENV] = mirror
    line = _one_line_error(host.run("machine", "init"))
    assert f"nor get the released one {mirror}/hostrt/guest@{DIGEST}: " in line, line
    assert not (host.run("machine", "ls").stdout.splitlines()[1:]), "no machine was created"


@pytest.mark.parametrize("accel_works", [False, True], ids=["probe-fails", "probe-boots"])
@pytest.mark.parametrize("profile", BY_ID)
def test_machine_start_up_to_the_qemu_command_line(profile: Profile, accel_works: bool, tmp_path: Path,
                                                   published: dict[str, str]) -> None:
    """The accelerator probe boots the host's candidate; the machine's QEMU gets it only if that
    boot showed the proof line, TCG otherwise; a QEMU that exits is one line and exit 125."""
    host = simulated_host(profile, tmp_path / "host", accel_works=accel_works)
    assert host.run("machine", "init", "--image", published["guest"]).returncode == 0
    line = _one_line_error(host.run("machine", "start"))
    assert line == (f"hostrt: error: machine default failed to start: {profile.emulator}: "
                    "fake QEMU: no guest can run on this test host")
    probe, machine = host.qemu_calls()
    emulator = str(host.base / "bin" / (profile.emulator + (".EXE" if profile.windows else "")))
    assert probe[0] == machine[0] == emulator
    assert probe[probe.index("-accel") + 1] == profile.accelerator
    accel = {"hvf": "hvf", "whpx": "whpx,kernel-irqchip=off"}[profile.accelerator] if accel_works else "tcg"
    assert machine[machine.index("-accel") + 1] == accel
    assert machine[machine.index("-M") + 1] == ("virt" if profile.arch == "arm64" else "q35")
    cpu = machine[machine.index("-cpu") + 1] if "-cpu" in machine else None
    if profile.arch == "arm64":
        assert cpu == ("host" if accel_works else "cortex-a57")
    else:
        assert cpu == ("host" if accel_works and profile.accelerator == "hvf" else None)
    qmp = next(arg for arg in machine if arg.startswith(("socket,id=qmp", "pipe,id=qmp")))
    assert qmp.startswith("pipe,id=qmp" if profile.windows else "socket,id=qmp,path=qmp.sock")
    assert "-sandbox" not in machine, "QEMU has a seccomp sandbox on Linux only"
    shares = [arg.split("path=")[1].split(",")[0] for arg in machine if arg.startswith("local,id=fs")]
    if profile.windows:
        assert shares == [], "QEMU's Windows builds have no 9p local backend"
    else:
        assert shares[0] == str(Path(host.env["HOME"]).resolve())
    verdict = host.run("info", "--format", "json")
    accelerator = json.loads(verdict.stdout)["host"]["accelerator"]
    assert accelerator["accelerator"] == (profile.accelerator if accel_works else "tcg"), accelerator


@pytest.mark.parametrize("profile", BY_ID)
def test_first_run_creates_the_default_machine_from_the_guest_image(profile: Profile, tmp_path: Path,
                                                                     published: dict[str, str]) -> None:
    """What a new user's first `hostrt run` does where no guest can be built: the default machine
    from $HOSTRT_GUEST_IMAGE, booted; QEMU's failure is the last line, and --rm leaves nothing."""
    host = simulated_host(profile, tmp_path / "host")
    host.env["HOSTRT_GUEST_IMAGE"] = published["guest"]
    done = host.run("run", "--rm", published["app"])
    assert done.returncode == 125, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"hostrt: creating machine default ({profile.arch}, driver qemu)"
    assert lines[-1] == (f"hostrt: error: machine default failed to start: {profile.emulator}: "
                         "fake QEMU: no guest can run on this test host")
    assert len(host.qemu_calls()) == 2  # the accelerator probe, the machine
    listed = host.run("ps", "-a", "-q")
    assert listed.returncode == 0 and listed.stdout.strip() == "", listed.stderr


# -- the portable suite --------------------------------------------------------------------
@pytest.mark.parametrize("profile", BY_ID)
def test_portable_suite_passes_on_the_host(profile: Profile, tmp_path: Path) -> None:
    """What the macOS and Windows CI runners run, `pytest -m portable`, collects and passes."""
    host = simulated_host(profile, tmp_path / "host")
    done = host.python("-m", "pytest", "-m", "portable", "-p", "no:cacheprovider", "-o", "timeout_method=thread",
                       f"--basetemp={tmp_path / 'basetemp'}", timeout=600)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"platform {profile.name.split('/')[0]} -- " in done.stdout
    assert " passed" in summary and "error" not in summary and "failed" not in summary, summary
