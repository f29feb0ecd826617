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
`slirp.json` in the container directory names it for `stop_recorded` (network teardown: rm,
--rm, prune). `stop` checks the process's command line before signalling it (a recycled pid
is left alone) and removes its API socket.
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


@dataclass
class Slirp:
    """The handle of one container's slirp4netns: its pid and API socket."""

    pid: int
    api_socket: str


def api_socket_path(netns: Path) -> Path:
    """Beside the run directory's netns/: slirp/<id>.sock (a socket path must fit in 108
    bytes; 32 hex digits of the id are unique enough)."""
    return netns.parent.parent / "slirp" / f"{netns.name[:32]}.sock"


def start(netns: Path, ports: list[dict], container_dir: Path, userns: str | None = None) -> int:
    """Connect the namespace at `netns` (a bind-mounted file or /proc/PID/ns/net) through slirp4netns.

    Returns its pid once tap0 is configured; the handle (pid, API socket) is in the
    container's `slirp.json` for `stop_recorded`. `ports` are not slirp4netns's business:
    hostrt's proxy publishes them (proxy.open_for) from the container's network.json.
    `userns`: the namespace's owning user namespace, when the caller is not already in it.
    HostrtError (one line) if slirp4netns is missing or fails.
    """
    binary = shutil.which("slirp4netns")
    if binary is None:
        raise HostrtError("rootless networking needs slirp4netns: install it (Debian: apt-get install slirp4netns) "
                          "or use --network none")
    api_socket = api_socket_path(netns)
    api_socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    api_socket.unlink(missing_ok=True)
    log = container_dir / LOG_FILE
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    argv = [binary, "--configure", f"--mtu={MTU}", "--disable-host-loopback", "--enable-seccomp",
            f"--ready-fd={ready_w}", f"--api-socket={api_socket}", "--netns-type=path"]
    if userns:
        argv.append(f"--userns-path={userns}")
    argv += [str(netns), "tap0"]
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
    _save(container_dir, Slirp(pid, str(api_socket)))  # before waiting: whatever happens next, it can be stopped
    try:
        ready = select.select([ready_r], [], [], READY_TIMEOUT)[0] and os.read(ready_r, 1)
    finally:
        os.close(ready_r)
    if ready != b"1":
        stop_recorded(container_dir)
        raise HostrtError(f"slirp4netns could not connect the container's network: {_last_line(log)}")
    return pid


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


def _api_socket_of(pid: int) -> str | None:
    """The API socket of `pid` if it is a slirp4netns started by `start`, else None (a recycled pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            args = cmdline.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    if not args[0].endswith("slirp4netns"):
        return None
    return next((arg.partition("=")[2] for arg in args if arg.startswith("--api-socket=")), None)


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


def stop(pid: int) -> None:
    """End the slirp4netns `start` returned and remove its API socket; safe to repeat.

    Returns once it has exited (its tap's removal makes that take tens of milliseconds), so
    nothing of the container's network outlives `rm`.
    """
    api_socket = _api_socket_of(pid)
    if api_socket is None:
        return  # gone already, or the pid now belongs to someone else
    try:
        pidfd = os.pidfd_open(pid)  # readable once it has exited, whoever its parent is
    except OSError:
        pidfd = -1
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            if pidfd >= 0:
                select.select([pidfd], [], [], 2.0)
            else:
                deadline = time.monotonic() + 2.0
                while not _gone(pid) and time.monotonic() < deadline:
                    time.sleep(0.005)
            if _gone(pid):
                break
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    Path(api_socket).unlink(missing_ok=True)


def stop_recorded(container_dir: Path) -> None:
    """`stop` the slirp4netns named by the container's `slirp.json`, then remove that file."""
    try:
        handle = Slirp(**json.loads((container_dir / HANDLE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return
    stop(handle.pid)
    Path(handle.api_socket).unlink(missing_ok=True)  # if slirp4netns died before `stop`
    (container_dir / HANDLE_FILE).unlink(missing_ok=True)
