"""Rootless networking: slirp4netns gives a container's network namespace a way out.

An unprivileged user can make network namespaces (inside its user namespace) but no veth,
bridge or NAT rule in the host's. As Podman 4 does by default, slirp4netns runs in the
caller's network namespace, puts a tap device (`tap0`, 10.0.2.100/24, gateway 10.0.2.2,
DNS 10.0.2.3) into the container's and carries its traffic through ordinary sockets of its
own. `--disable-host-loopback` keeps the container away from the host's 127.0.0.1 services.

Published ports do not go through slirp4netns (as Podman's default `rootlesskit` port
handler): hostrt's own proxy listens in the caller's namespace and makes its upstream
sockets inside the container's (`enter.socket_in_namespace`), so they are bound where the
user asked, a busy port fails like any other, and the listeners die with their process.

slirp4netns is started detached (reparented at once, so no hostrt process has to reap it);
`slirp.json` in the container directory names it for `stop`, which checks the process's
command line before signalling it (a recycled pid is left alone) and removes its API socket.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hostrt.errors import HostrtError

NETWORK = "slirp4netns"
ADDRESS, PREFIX, GATEWAY, DNS = "10.0.2.100", 24, "10.0.2.2", "10.0.2.3"
MTU = 65520  # as Podman: fewer, larger packets through the user-space stack
HANDLE_FILE = "slirp.json"
LOG_FILE = "slirp4netns.log"
READY_TIMEOUT = 10.0
_INITIAL_UID_MAP = ["0", "0", "4294967295"]


@dataclass
class Slirp:
    """The handle of one container's slirp4netns: its pid and API socket."""

    pid: int
    api_socket: str


def in_user_namespace() -> bool:
    """True in a user namespace other than the host's (rootless): there the default network is slirp4netns."""
    try:
        with open("/proc/self/uid_map") as uid_map:
            return uid_map.read().split() != _INITIAL_UID_MAP
    except OSError:
        return False


def api_socket_path(run_dir: Path, container_id: str) -> Path:
    # A socket path must fit in 108 bytes; 32 hex digits of the id are unique enough.
    return run_dir / "slirp" / f"{container_id[:32]}.sock"


def start(container_dir: Path, netns: str, api_socket: Path, userns: str | None = None) -> Slirp:
    """Connect the namespace at `netns` (a bind-mounted file or /proc/PID/ns/net) through slirp4netns.

    Returns once tap0 is configured; the handle is in `slirp.json` for `stop`. `userns`: the
    namespace's owning user namespace, when the caller is not already in it.
    HostrtError (one line) if slirp4netns is missing or fails.
    """
    binary = shutil.which("slirp4netns")
    if binary is None:
        raise HostrtError("rootless networking needs slirp4netns: install it (Debian: apt-get install slirp4netns) "
                          "or use --network none")
    api_socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    api_socket.unlink(missing_ok=True)
    log = container_dir / LOG_FILE
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    argv = [binary, "--configure", f"--mtu={MTU}", "--disable-host-loopback", "--enable-seccomp",
            f"--ready-fd={ready_w}", f"--api-socket={api_socket}", "--netns-type=path"]
    if userns:
        argv.append(f"--userns-path={userns}")
    argv += [netns, "tap0"]
    try:
        # sh starts it in the background and exits: slirp4netns is nobody's child here.
        shell = subprocess.run(["sh", "-c", '"$@" </dev/null >/dev/null 2>"$0" & echo $!', str(log), *argv],
                               pass_fds=(ready_w,), capture_output=True, text=True, start_new_session=True)
    finally:
        os.close(ready_w)
    try:
        pid = int(shell.stdout.strip())
    except ValueError:
        os.close(ready_r)
        raise HostrtError(f"cannot start slirp4netns: {shell.stderr.strip() or 'no pid'}") from None
    handle = Slirp(pid, str(api_socket))
    _save(container_dir, handle)  # before waiting: whatever happens next, `stop` finds it
    try:
        ready = select.select([ready_r], [], [], READY_TIMEOUT)[0] and os.read(ready_r, 1)
    finally:
        os.close(ready_r)
    if ready != b"1":
        stop(container_dir)
        raise HostrtError(f"slirp4netns could not connect the container's network: {_last_line(log)}")
    return handle


def _save(container_dir: Path, handle: Slirp) -> None:
    temp = container_dir / (HANDLE_FILE + ".tmp")
    temp.write_text(json.dumps(asdict(handle)))
    os.replace(temp, container_dir / HANDLE_FILE)


def _last_line(log: Path) -> str:
    """slirp4netns's messages on one line (the cause comes before its "child failed")."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return "; ".join(lines[-3:]) if lines else "it exited without a message"


def _is_ours(pid: int, api_socket: str) -> bool:
    """Is `pid` still the slirp4netns serving `api_socket` (and not a recycled pid)?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            args = cmdline.read().split(b"\0")
    except OSError:
        return False
    return f"--api-socket={api_socket}".encode() in args


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rpartition(")")[2].split()[0]
    except OSError:
        return True
    if state == "Z":  # reparented to us (a subreaper): collect it
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return True
    return False


def stop(container_dir: Path) -> None:
    """End the container's slirp4netns and remove its handle and socket; safe to repeat."""
    try:
        handle = Slirp(**json.loads((container_dir / HANDLE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return
    if _is_ours(handle.pid, handle.api_socket):
        for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            try:
                os.kill(handle.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while not _gone(handle.pid) and time.monotonic() < deadline:
                time.sleep(0.005)
            if _gone(handle.pid):
                break
    Path(handle.api_socket).unlink(missing_ok=True)
    (container_dir / HANDLE_FILE).unlink(missing_ok=True)
