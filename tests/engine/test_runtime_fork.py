"""hostrt-runtime run in a forked child (runtime_fork.py, used by the monitor) does what the
exec'd runtime does: same output, same errors, state removed by delete."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from hostrt.engine.runtime_cli import Runtime, RuntimeCallError
from tests.engine.conftest import Hostrt

pytestmark = pytest.mark.root
RUNTIME = str(Path(sys.executable).with_name("hostrt-runtime"))


def _run_bundle(runtime: Runtime, container_id: str, bundle: Path) -> tuple[str, str]:
    """("ok", output) or ("error", message) of create + start + delete of the bundle."""
    out_r, out_w = os.pipe()
    try:
        with open(os.devnull, "rb") as devnull:
            try:
                runtime.create(container_id, bundle, bundle / f"{container_id}.pid", devnull, out_w, out_w)
                os.close(out_w)
                out_w = -1
                runtime.start(container_id)
            except RuntimeCallError as err:
                return "error", str(err)
        if out_w >= 0:
            os.close(out_w)
            out_w = -1
        with os.fdopen(out_r, "rb") as out:
            out_r = -1
            return "ok", out.read().decode()  # EOF when the container's process has exited
    finally:
        for fd in (out_r, out_w):
            if fd >= 0:
                os.close(fd)
        runtime.delete(container_id, force=True)
        assert not runtime.has_state(container_id)


@pytest.mark.parametrize(("command", "expected"), [
    (["sh", "-c", "echo hello; echo err >&2"], ("ok", "hello\nerr\n")),
    (["/nosuch"], ("error", None)),
])
def test_forked_runtime_matches_the_exec_d_one(hostrt: Hostrt, tmp_path: Path, command: list[str],
                                                expected: tuple[str, str | None]) -> None:
    container_id = hostrt.ok("create", "--network", "none", "busybox", *command).strip()
    bundle = hostrt.root / "containers" / container_id
    try:
        results = [_run_bundle(Runtime(RUNTIME, tmp_path / f"state-{mode}", in_process=mode == "fork"),
                               f"{mode}-{container_id[:12]}", bundle) for mode in ("exec", "fork")]
    finally:
        hostrt("rm", "-f", container_id)
    assert results[0] == results[1]
    assert results[0][0] == expected[0]
    if expected[1] is not None:
        assert results[0][1] == expected[1]
    else:
        assert "nosuch" in results[0][1]


def test_the_monitor_runs_its_runtime_in_process(hostrt: Hostrt) -> None:
    from hostrt import context
    from hostrt.engine.monitor_client import _send

    container_id = hostrt.ok("run", "-d", "--network", "none", "busybox", "sleep", "60").strip()
    try:
        status = _send(hostrt.root / "run" / f"monitor-{context.key()}.sock", {"op": "ping"}, 10)
        assert status["runtime_in_process"] is True and status["watching"] >= 1
        assert json.loads(hostrt.ok("inspect", container_id))[0]["State"]["Running"]
    finally:
        hostrt("rm", "-f", container_id)


def test_a_foreground_run_forks_the_runtime_it_preloaded(hostrt: Hostrt) -> None:
    import subprocess

    code = ("import sys\nfrom hostrt.__main__ import main\nrc = main(sys.argv[1:])\n"
            "print('preloaded:', 'backends.linux_native.ops.create' in sys.modules, file=sys.stderr)\nsys.exit(rc)")
    for env in (hostrt.env, {**hostrt.env, "HOSTRT_NO_FAST_PATH": "1"}):  # both CLI paths
        done = subprocess.run([sys.executable, "-c", code, "run", "--rm", "--network", "none", "busybox", "echo", "x"],
                              env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert (done.returncode, done.stdout) == (0, "x\n"), done.stderr
        assert done.stderr.strip().splitlines()[-1] == "preloaded: True"
    runc = {**hostrt.env, "HOSTRT_RUNTIME": "/usr/sbin/runc"}  # another runtime is always exec'd
    if Path("/usr/sbin/runc").exists():
        done = subprocess.run([sys.executable, "-c", code, "run", "--rm", "--network", "none", "busybox", "echo", "x"],
                              env=runc, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert done.stderr.strip().splitlines()[-1] == "preloaded: False"


def test_the_forked_runtime_passes_none_of_our_fds_to_the_container(hostrt: Hostrt, tmp_path: Path) -> None:
    container_id = hostrt.ok("create", "--network", "none", "busybox", "true").strip()
    bundle = hostrt.root / "containers" / container_id
    runtime = Runtime(RUNTIME, tmp_path / "state", in_process=True)
    ours_r, ours_w = os.pipe()  # an fd of this process, as the monitor has its socket and pipes
    try:
        with open(os.devnull, "rb") as devnull, open(os.devnull, "wb") as sink:
            init = runtime.create("fds-" + container_id[:12], bundle, bundle / "fds.pid", devnull, sink, sink)
        ours = {os.readlink(f"/proc/self/fd/{fd}") for fd in (ours_r, ours_w)}
        held = {os.readlink(f"/proc/{init}/fd/{fd}") for fd in os.listdir(f"/proc/{init}/fd")}
        assert held and not ours & held  # init waits for `start` holding only its own fds
    finally:
        os.close(ours_r)
        os.close(ours_w)
        runtime.delete("fds-" + container_id[:12], force=True)
        hostrt("rm", "-f", container_id)
