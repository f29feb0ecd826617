"""The guest side of the VM backend: small operations the host asks for.

They run inside the machine with only the Python standard library and the files the host
shipped (the same `backends/linux_native` runtime, the same monitor, the same layer
unpacker as on the host), served by the resident guest daemon (`guestd.py`); also usable
as `python3 -m backends.lightvm.guest_agent OP ...`. The guest keeps its own layer store,
so an image's layers cross the wire once per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from backends.lightvm import guest_ports

GUEST_ROOT = Path(os.environ.get("HOSTRT_ROOT", "/var/lib/hostrt-guest"))
LAYERS = GUEST_ROOT / "layers"
CONTAINERS = GUEST_ROOT / "containers"
SHARES = Path("/mnt/hostrt")
CODE = Path(__file__).resolve().parents[2]  # the shipped tree holding backends/ and hostrt/
RUNTIME = CODE / "hostrt-runtime"
PTY_FILE = "pty"  # the /dev/pts path of a `run -t` container's terminal
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
RESULT_FD: int | None = None  # where an operation writes its result: set by the guest daemon (fd 3)


def _runtime():  # noqa: ANN202
    """The runtime called in forks of this process: an interpreter start is dear in a TCG guest."""
    from hostrt.engine.runtime_cli import Runtime

    return Runtime.local(GUEST_ROOT / "run" / "runtime", str(RUNTIME))


def put_layer(digest: str, compression: str, diff_id: str = "") -> int:
    """Read a layer blob from stdin, check its digest, unpack it beside its place, rename."""
    from hostrt.images.unpack import unpack_layer

    hex_ = digest.split(":", 1)[1]
    LAYERS.mkdir(parents=True, exist_ok=True)
    blob = tempfile.NamedTemporaryFile(dir=LAYERS, prefix=".blob-", delete=False)
    hasher = hashlib.sha256()
    with blob:
        while chunk := sys.stdin.buffer.read(1 << 20):
            hasher.update(chunk)
            blob.write(chunk)
    work = Path(tempfile.mkdtemp(dir=LAYERS, prefix=".tmp-"))
    try:
        if hasher.hexdigest() != hex_:
            raise ValueError(f"layer {digest}: received bytes hash to sha256:{hasher.hexdigest()}")
        with open(blob.name, "rb") as source:
            unpack_layer(source, compression, work, expected_diff_id=diff_id or None)
        os.rename(work, LAYERS / hex_)
    except FileExistsError:
        shutil.rmtree(work)  # another transfer of the same layer won
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        os.unlink(blob.name)
    return 0


def prepare(container_id: str) -> int:
    """Assemble the bundle: rootfs over the shared layers, /etc files, config.json from stdin.

    stdin: {"spec": <config with rootfs and /etc file paths left for the guest>, "layers": [hex...]}.
    Prints {"bundle": DIR}, or {"missing": [hex...]} and does nothing when layers are missing
    (the host ships those and asks again: one round trip in the common case).
    """
    from hostrt.engine.snapshot import mount_rootfs

    request = json.load(sys.stdin)
    missing = [hex_ for hex_ in request["layers"] if not (LAYERS / hex_).is_dir()]
    if missing:
        print(json.dumps({"missing": missing}))
        return 0
    for tag in request.get("shares", []):
        _mount_share(tag)
    directory = CONTAINERS / container_id
    directory.mkdir(parents=True)
    rootfs = mount_rootfs([LAYERS / hex_ for hex_ in request["layers"]], directory)
    spec = request["spec"]
    spec["root"]["path"] = str(rootfs)
    files = {"/etc/hostname": spec["hostname"] + "\n", "/etc/hosts": HOSTS + f"127.0.1.1\t{spec['hostname']}\n",
             "/etc/resolv.conf": ""}
    for mount in spec["mounts"]:
        if mount["destination"] in files:
            path = directory / Path(mount["destination"]).name
            path.write_text(files[mount["destination"]])
            mount["source"] = str(path)
    (directory / "config.json").write_text(json.dumps(spec))
    guest_ports.write(directory, request.get("publish", []))
    print(json.dumps({"bundle": str(directory)}))
    return 0


def _mount_share(tag: str) -> None:
    """Mount the host directory exported under `tag` (9p over virtio) once per boot."""
    import subprocess

    target = SHARES / tag
    target.mkdir(parents=True, exist_ok=True)
    if any(line.split()[1] == str(target) for line in Path("/proc/mounts").read_text().splitlines()):
        return
    subprocess.run(["mount", "-t", "9p", "-o", "trans=virtio,version=9p2000.L,msize=524288", tag, str(target)],
                   check=True, capture_output=True)


def run(container_id: str, tty: str = "notty", rows: str = "0", cols: str = "0", after: str = "keep") -> int:
    """Run attached to this request's stdio; exit with the container's code.

    With "tty" the container gets a pty of the given size: its output comes back on stdout,
    stdin goes to it (Ctrl-C arrives as a byte, as with docker -it), `resize` changes its size.
    Once it has ended, its end (what `state` would report) is written on fd 3, the daemon's
    result pipe, and with `after` "rm" (a `run --rm`) the container is removed here, as `remove`
    would: the host then needs no more requests for it."""
    from hostrt.engine import supervise
    from hostrt.network.proxy import ThreadedProxy

    directory = CONTAINERS / container_id
    supervise.become_subreaper()
    runtime = _runtime()
    ports = ThreadedProxy(directory)  # this session serves the published ports while the container runs
    master = None
    if tty == "tty":
        from hostrt.engine import console

        with console.console_socket() as (listener, socket_path), open(os.devnull, "rb") as devnull:
            pid = runtime.create(container_id, directory, directory / supervise.PID_FILE, devnull, devnull, devnull,
                                 console_socket=socket_path)
            master = console.receive_master(listener)
        _set_window_size(master, int(rows), int(cols))
        (directory / PTY_FILE).write_text(_pty_path(master))
    else:
        pid = runtime.create(container_id, directory, directory / supervise.PID_FILE, sys.stdin.fileno(),
                             sys.stdout.fileno(), sys.stderr.fileno())
    for sig in supervise.FORWARDED_SIGNALS:
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    runtime.start(container_id)
    if master is not None:
        from hostrt.engine import console

        console.relay(master, True, lambda chunk: _write_all(1, chunk))
    _, status = os.waitpid(pid, 0)
    ports.close()
    code = supervise.exit_code_of(status)
    supervise.write_exit(directory, code, supervise.oom_killed(container_id))
    ended = supervise.read_exit(directory)
    if after == "rm":
        remove(container_id)
    else:
        runtime.delete(container_id, force=True)
    _write_result({"ended": ended, "removed": after == "rm"})
    return code


def _write_result(result: dict) -> None:
    """The operation's result on the guest daemon's result pipe (none when run from a shell)."""
    if RESULT_FD is not None:
        _write_all(RESULT_FD, json.dumps(result).encode())


def resize(container_id: str, rows: str, cols: str) -> int:
    """Give the container's pty a new size (the host's terminal was resized: SIGWINCH)."""
    path = (CONTAINERS / container_id / PTY_FILE).read_text()
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        _set_window_size(fd, int(rows), int(cols))
    finally:
        os.close(fd)
    return 0


def _set_window_size(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct
    import termios

    if rows > 0 and cols > 0:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _pty_path(master: int) -> str:
    """/dev/pts/N of a pty master (TIOCGPTN), so that `resize` can reach it from another process."""
    import fcntl
    import struct
    import termios

    request = getattr(termios, "TIOCGPTN", 0x80045430)  # _IOR('T', 0x30, unsigned int); not in every termios
    number = struct.unpack("I", fcntl.ioctl(master, request, struct.pack("I", 0)))[0]
    return f"/dev/pts/{number}"


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def start(container_id: str, tty: str) -> int:
    """Hand the container to the guest's own monitor (detached), print its pid."""
    from hostrt.engine.monitor_client import ask_monitor
    from hostrt.paths import Paths

    paths = Paths(root=GUEST_ROOT, run=GUEST_ROOT / "run")
    reply = ask_monitor(paths, _runtime(), {"op": "start", "id": container_id, "dir": str(CONTAINERS / container_id),
                                            "auto_remove": False, "tty": tty == "tty"})
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1


def state(container_id: str) -> int:
    """The container's end (exit file) or that it still runs, as JSON."""
    from hostrt.engine import supervise

    directory = CONTAINERS / container_id
    ended = supervise.read_exit(directory)
    pid_file = directory / supervise.PID_FILE
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    running = ended is None and pid is not None and supervise.pid_exists(pid)
    if ended is None and pid is not None and not running:
        ended = _exit_record_soon(directory)
    if running:
        guest_ports.keep_served(container_id, directory, GUEST_ROOT, _runtime)
    print(json.dumps({"running": running, "pid": pid, "ended": ended, "exists": directory.is_dir()}))
    return 0


def _exit_record_soon(directory: Path, limit: float = 3.0) -> dict | None:
    """The exit record of a container whose init is gone: the monitor reaps it, then writes the
    record (fsynced, which takes a while under TCG); None if none comes (a killed monitor)."""
    import time

    from hostrt.engine import supervise

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(0.05)
        ended = supervise.read_exit(directory)
        if ended is not None:
            return ended
    return None


def logs(container_id: str) -> int:
    for name in ("container.log.1", "container.log"):
        path = CONTAINERS / container_id / name
        if path.exists():
            sys.stdout.write(path.read_text())
    return 0


def exec_(container_id: str, *args: str) -> int:
    """`runtime exec` with this session's stdio; args are runtime exec flags, `--`, then the command."""
    flags, command = list(args[: args.index("--")]), list(args[args.index("--") + 1:])
    return _runtime().call("exec", *flags, container_id, *command, stdin=None, stdout=None, stderr=None,
                           check=False, timeout=None).returncode


def pause(container_id: str, action: str) -> int:
    """`pause` or `resume` every process of the container (the freezer cgroup)."""
    _runtime().call("resume" if action == "resume" else "pause", container_id)
    return 0


def kill(container_id: str, signal_name: str) -> int:
    _runtime().kill(container_id, signal_name, all_processes=signal_name == "SIGKILL")
    return 0


def remove(container_id: str) -> int:
    """Everything the container had in the guest: runtime state, rootfs mount, its directory."""
    from hostrt.engine.snapshot import unmount_rootfs

    _runtime().delete(container_id, force=True)
    directory = CONTAINERS / container_id
    if directory.is_dir():
        unmount_rootfs(directory)
        shutil.rmtree(directory)
    return 0


OPERATIONS = {"put-layer": put_layer, "prepare": prepare, "run": run,
              "resize": resize, "start": start, "state": state, "logs": logs, "kill": kill, "remove": remove,
              "exec": exec_, "pause": pause}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in OPERATIONS:
        print(f"usage: guest_agent {{{','.join(OPERATIONS)}}} ARGS", file=sys.stderr)
        return 2
    try:
        return OPERATIONS[argv[0]](*argv[1:])
    except Exception as err:  # one line, as hostrt prints its errors, and docker's exit codes
        from hostrt.errors import start_failure

        print(f"hostrt: error: {err}", file=sys.stderr)
        return start_failure(str(err)).exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
