"""The lightvm backend: containers in a Linux VM, run by the same runtime over SSH.

A machine per guest architecture (`default` for the host's, `default-<arch>` otherwise) is
created and booted on first use and stays up for the next run. The host ships the runtime
(`payload.py`) and the image's missing layers into the guest, which keeps its own layer
store; the bundle is assembled and run there by `guest_agent.py`.
"""

from __future__ import annotations

import json
import os
import signal as signals
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from backends.lightvm.hostagent import AgentSession, NotStarted, PayloadMissing, start_agent, stop_agent
from hostrt.engine.records import ContainerRecord
from hostrt.errors import HostrtError, UsageError, start_failure
from hostrt.paths import Paths

GUEST_CONTAINERS = "/var/lib/hostrt-guest/containers"
ATTACHED_FILE = "attached.pid"  # the hostrt process running the container in the foreground
GUEST_SHARES = "/mnt/hostrt"  # where the guest mounts the machine's 9p shares (share0, share1, ...)


class GuestError(HostrtError):
    """An operation inside the machine failed."""


def _terminal_size() -> tuple[int, int]:
    """(rows, columns) of our terminal, or (0, 0) when stdin is not one (the pty keeps its default)."""
    import os

    try:
        size = os.get_terminal_size(sys.stdin.fileno())
    except OSError:
        return 0, 0
    return size.lines, size.columns


def machine_name(host_arch: str, guest_arch: str) -> str:
    return "default" if guest_arch == host_arch else f"default-{guest_arch}"


def _guest_failure(stderr: bytes) -> HostrtError:
    """The guest's last error line, mapped as docker maps a failed start (127, 126, else 125)."""
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    message = lines[-1].removeprefix("hostrt: error: ") if lines else "the guest operation failed"
    return start_failure(message, otherwise=GuestError)


class LightVMBackend:
    """Containers in machines; one SSH session per machine for the life of this process."""

    def __init__(self, paths: Paths, on_started: Callable[[ContainerRecord, int], None]) -> None:
        self.paths = paths
        self.on_started = on_started
        self._sessions: dict[str, tuple[Any, str]] = {}  # machine -> (host agent, guest code dir)
        self._reached: set[str] = set()  # machines whose agent relayed a request of this process
        self._ended: dict[str, dict] = {}  # container id -> its end, as an attached run reported it
        self._removed: set[str] = set()  # containers an attached `run --rm` removed in the guest

    # -- machines -----------------------------------------------------------------------
    def _session(self, name: str, arch: str, boot: bool) -> tuple[AgentSession, str]:
        """The machine's host agent and the guest code dir, without a round trip: the first request
        through it tells whether the machine runs and has the code (see `_guest`)."""
        if name in self._sessions:
            return self._sessions[name]
        from backends.lightvm.machine_dir import MachineDir
        from backends.lightvm.payload import payload_dir

        root = self.paths.machines
        if not (root / name / "machine.json").exists():
            if not boot:
                raise GuestError(f"machine {name} no longer exists")
            self._create_machine(name, arch)
        machine = MachineDir(root / name)  # a warm run goes through the agent: paramiko is not even imported
        agent = AgentSession(machine.path)
        if agent.available() and not agent.current():
            stop_agent(machine.path)
            start_agent(machine.path)
        self._sessions[name] = (agent, payload_dir())
        return self._sessions[name]

    def _reach(self, name: str, arch: str, boot: bool) -> None:
        """A request did not reach the guest: boot the machine (if `boot`) or restart its agent."""
        from backends.lightvm.machine_dir import MachineDir

        machine = MachineDir(self.paths.machines / name)
        if not boot and machine.run_record() is None:
            raise GuestError(f"machine {name} is not running")
        self._boot(name, arch, machine)

    def _guest(self, record: ContainerRecord, op: str, *args: str, boot: bool = False, **io: Any) -> tuple[int, bytes, bytes]:
        """Guest operation `op` through the machine's agent. A request that did not reach the guest
        (nothing ran) is retried once the cause is fixed: the machine booted or its agent
        restarted (only for the first request of this process), the code shipped."""
        from backends.lightvm.payload import ship_payload
        from hostrt.platform import ImagePlatform

        name = record.machine or ""
        arch = ImagePlatform.parse(record.platform).architecture
        for _attempt in range(3):
            session, code_dir = self._agent(record, boot)
            try:
                done = session.guest(code_dir, op, *args, **io)
            except PayloadMissing:
                try:
                    ship_payload(session.run)
                except OSError as failed:
                    raise GuestError(f"machine {record.machine}: {failed}") from None
                continue
            except NotStarted as lost:
                self._sessions.pop(name, None)
                if name in self._reached:
                    raise self._lost(name, lost) from None
                self._reach(name, arch, boot)
                self._reached.add(name)  # booted or reconnected: a second failure is an error
                continue
            except OSError as lost:
                self._sessions.pop(name, None)
                raise self._lost(name, lost) from None
            self._reached.add(name)
            return done
        raise GuestError(f"machine {record.machine} cannot be reached")

    def _lost(self, name: str, lost: Exception) -> GuestError:
        """A request broke off: the guest's last console lines tell a crash or a hang from a
        network failure."""
        from backends.lightvm.machine_dir import MachineDir

        tail = MachineDir(self.paths.machines / name).console_tail()
        return GuestError(f"lost the connection to machine {name}: {lost}\n--- console ---\n{tail}")

    def _create_machine(self, name: str, arch: str) -> None:
        from backends.lightvm.drivers import choose_driver
        from backends.lightvm.guest_source import guest_for
        from backends.lightvm.machines import init_machine
        from backends.lightvm.settings import MachineSettings, default_shares

        driver, _why = choose_driver()
        print(f"hostrt: creating machine {name} ({arch}, driver {driver})", file=sys.stderr)
        settings = MachineSettings(name=name, arch=arch, shares=default_shares(), driver=driver)
        init_machine(self.paths.machines, settings, guest_for(self.paths, arch))

    def _boot(self, name: str, arch: str, machine: Any) -> None:
        """Start the machine if its guest is unreachable, then (re)start its host agent."""
        import platform as stdlib_platform

        from backends.lightvm.machines import start_machine, ssh_target
        from backends.lightvm.probe import resolve_virt_type
        from backends.lightvm.ssh import connect
        from hostrt.platform import detect_host

        stop_agent(machine.path)
        try:
            connect(ssh_target(machine), timeout=5).close()
        except Exception:
            host = detect_host()
            virt = resolve_virt_type(host.os, host.architecture, arch, Path(machine.boot().kernel), self.paths.cache,
                                     stdlib_platform.release())
            print(f"hostrt: starting machine {name} ({virt})", file=sys.stderr)
            _, client = start_machine(self.paths.machines, name, virt)  # type: ignore[arg-type]
            client.close()
        if not start_agent(machine.path):
            raise GuestError(f"the host agent of machine {name} did not start")

    def _agent(self, record: ContainerRecord, boot: bool = False) -> tuple[AgentSession, str]:
        from hostrt.platform import ImagePlatform

        assert record.machine is not None
        return self._session(record.machine, ImagePlatform.parse(record.platform).architecture, boot)

    def _call(self, record: ContainerRecord, op: str, *args: str, stdin: bytes | None = None, boot: bool = False) -> bytes:
        code, out, err = self._guest(record, op, *args, stdin=stdin, boot=boot)
        if code != 0:
            raise _guest_failure(err)
        return out

    # -- the interface ------------------------------------------------------------------
    def prepare(self, record: ContainerRecord, image: Any, layer_dirs: list[Path]) -> list[str]:
        """Have the guest assemble the bundle from a host-built spec, shipping the layers it lacks."""
        from hostrt.images.local import LocalImages
        from hostrt.images.oci import LAYER_COMPRESSION
        from hostrt.spec import ContainerFiles, build_spec, platform_architecture

        hexes = [layer.digest.split(":", 1)[1] for layer in image.layers]
        self._agent(record, boot=True)  # the machine exists: its settings name the shares
        guest_dir = Path(GUEST_CONTAINERS) / record.id
        files = ContainerFiles(guest_dir / "hostname", guest_dir / "hosts", guest_dir / "resolv.conf")
        # Users resolve against the image's own files: the top layer that carries etc/passwd.
        passwd_root = next((d for d in reversed(layer_dirs) if (d / "etc" / "passwd").is_file()), layer_dirs[-1])
        # The guest is a machine of the image's architecture; its kernel (the guest image's) is recent.
        spec = build_spec(image.config, record.options, passwd_root, record.id, files,
                          architecture=platform_architecture(record.platform))
        spec["root"]["path"] = str(guest_dir / "rootfs")
        shares = self._volumes_through_shares(record, spec)
        publish = self._plan_ports(record)
        request = json.dumps({"spec": spec, "layers": hexes, "shares": shares, "publish": publish}).encode()
        # One round trip when the guest has the layers; else it names the missing ones, which go first.
        # (The first request boots the machine if it does not run.)
        missing = json.loads(self._call(record, "prepare", record.id, stdin=request, boot=True)).get("missing")
        if missing:
            store = LocalImages.open(self.paths).store
            for layer in image.layers:
                if layer.digest.split(":", 1)[1] in missing:
                    self._call(record, "put-layer", layer.digest, LAYER_COMPRESSION[layer.mediaType],
                               layer.diff_id or "", stdin=store.read(layer.digest))
            self._call(record, "prepare", record.id, stdin=request)
        return spec["process"]["args"]

    def _plan_ports(self, record: ContainerRecord) -> list[dict]:
        if not record.options.publish:
            return []
        from backends.lightvm import ports

        return ports.plan(self.paths.containers / record.id, self.paths.machines / (record.machine or ""),
                          record.options.publish)

    def _reached_before_forwards(self, record: ContainerRecord) -> None:
        """Forwards are made in the machine's QEMU: with ports to publish, make sure first that the
        machine runs (as any first request does), unless a request of this process got through."""
        self._agent(record)
        if record.options.publish and record.machine not in self._reached:
            self._call(record, "state", record.id)

    def _forwards(self, record: ContainerRecord, up: bool) -> None:
        """QEMU's host forwards of the container's published ports, made or removed (see ports.py)."""
        from backends.lightvm import ports

        if record.options.publish:
            (ports.open_forwards if up else ports.close_forwards)(self.paths.containers / record.id)

    def _volumes_through_shares(self, record: ContainerRecord, spec: dict) -> list[str]:
        """Point each `-v` bind at the guest's mount of the 9p share holding its host path."""
        from backends.lightvm.machine_dir import MachineDir

        settings = MachineDir(self.paths.machines / (record.machine or "")).settings()
        used: set[str] = set()
        by_destination = {m["destination"]: m for m in spec["mounts"] if m["type"] == "bind"}
        for volume in record.options.volumes:
            found = settings.share_for(volume.source)
            if found is None:
                raise UsageError(f"-v {volume.source}: not shared with machine {settings.name} "
                                 f"(it shares {', '.join(settings.shares) or 'nothing'})")
            index, below = found
            by_destination[volume.destination]["source"] = f"{GUEST_SHARES}/share{index}/{below}".rstrip("/")
            used.add(f"share{index}")
        return sorted(used)

    def run_attached(self, record: ContainerRecord, interactive: bool) -> int:
        """Stream the container's output from the guest; Ctrl-C and SIGTERM reach it through the agent.
        With -t the container has a pty in the guest and our terminal is raw, as with native -t."""
        from hostrt.engine.console import raw_terminal

        self._reached_before_forwards(record)
        self._forwards(record, up=True)
        attached = self.paths.containers / record.id / ATTACHED_FILE
        attached.write_text(str(os.getpid()))
        self.on_started(record, 0)

        def forward(signum: int, _frame: object) -> None:
            threading.Thread(target=self._quietly, args=(self.signal, record, signals.Signals(signum).name)).start()

        rows, cols = _terminal_size() if record.options.tty else (0, 0)
        # With --rm the guest removes the container once it ends; either way it reports the end.
        run_args = ["tty" if record.options.tty else "notty", str(rows), str(cols),
                    "rm" if record.auto_remove else "keep"]
        result = bytearray()
        previous = {sig: signals.signal(sig, forward) for sig in (signals.SIGINT, signals.SIGTERM)}
        if record.options.tty and sys.stdin.isatty():
            previous[signals.SIGWINCH] = signals.signal(signals.SIGWINCH, lambda *_: self._resize_quietly(record))
        try:
            with raw_terminal(record.options.tty and interactive):
                code, _, _ = self._guest(record, "run", record.id, *run_args, stdout=sys.stdout.fileno(),
                                         stderr=sys.stderr.fileno(),
                                         stdin_fd=sys.stdin.fileno() if interactive else None, result=result)
            self._note_result(record, result)
        finally:
            for sig, handler in previous.items():
                signals.signal(sig, handler)
            self._forwards(record, up=False)
            attached.unlink(missing_ok=True)
        return code  # a failed start was already reported on stderr by the guest, as 125/126/127

    def _note_result(self, record: ContainerRecord, result: bytes) -> None:
        """What the guest's `run` reported: the container's end, and whether it removed it."""
        try:
            reply = json.loads(result) if result else {}
        except ValueError:
            return
        if reply.get("ended"):
            self._ended[record.id] = reply["ended"]
        if reply.get("removed"):
            self._removed.add(record.id)

    def _resize_quietly(self, record: ContainerRecord) -> None:
        rows, cols = _terminal_size()
        threading.Thread(target=self._quietly, args=(self._call, record, "resize", record.id, str(rows), str(cols))).start()

    @staticmethod
    def _quietly(call: Callable[..., Any], *args: Any) -> None:
        """For signal handlers: a guest that is gone meanwhile is not an error worth a traceback."""
        try:
            call(*args)
        except HostrtError:
            pass

    def start_detached(self, record: ContainerRecord) -> int:
        self._reached_before_forwards(record)  # a machine that is not running fails here, before any forward
        self._forwards(record, up=True)
        try:
            reply = json.loads(self._call(record, "start", record.id, "tty" if record.options.tty else "notty"))
        except BaseException:
            self._forwards(record, up=False)
            raise
        return int(reply.get("pid") or 0)

    def signal(self, record: ContainerRecord, signal: str, all_processes: bool = False) -> None:
        self._call(record, "kill", record.id, signal)

    def started(self, record: ContainerRecord) -> dict | None:
        return None  # the guest side starts a detached container within the request that records it

    def ended(self, record: ContainerRecord) -> dict | None:
        if record.id in self._ended:  # an attached run of this process saw it end
            self._forwards(record, up=False)
            return self._ended[record.id]
        try:
            state = json.loads(self._call(record, "state", record.id))
        except GuestError:
            self._forwards(record, up=False)
            return {"exit_code": 255, "oom_killed": False, "finished_at": time.time()}  # the machine is gone
        if state["running"] or (state["pid"] is None and state["ended"] is None and self._attached_run_alive(record)):
            return None  # (an attached run whose guest side has not made the container yet)
        self._forwards(record, up=False)
        return state["ended"] or {"exit_code": 255, "oom_killed": False, "finished_at": time.time()}

    def _attached_run_alive(self, record: ContainerRecord) -> bool:
        from hostrt.engine.supervise import pid_exists

        try:
            return pid_exists(int((self.paths.containers / record.id / ATTACHED_FILE).read_text()))
        except (OSError, ValueError):
            return False

    def pause(self, record: ContainerRecord, resume: bool) -> None:
        self._call(record, "pause", record.id, "resume" if resume else "pause")

    def exec(self, record: ContainerRecord, command: list[str], env: list[str], workdir: str | None,
             user: str | None, detach: bool, interactive: bool) -> int:
        if user and not user.replace(":", "").isdigit():
            raise UsageError("exec -u in a VM container takes a numeric UID[:GID]")
        flags = [f"--env={item}" for item in env] + (["--detach"] if detach else [])
        flags += [f"--cwd={workdir}"] if workdir else []
        flags += [f"--user={user if ':' in user else user + ':0'}"] if user else []
        code, _, _ = self._guest(record, "exec", record.id, *flags, "--", *command, stdout=sys.stdout.fileno(),
                                 stderr=sys.stderr.fileno(), stdin_fd=sys.stdin.fileno() if interactive else None)
        return code

    def logs(self, record: ContainerRecord) -> list[dict]:
        from hostrt.engine.logfile import parse

        return parse(self._call(record, "logs", record.id).decode(errors="replace"))

    def delete(self, record: ContainerRecord) -> None:
        self._forwards(record, up=False)
        if record.id in self._removed:
            return  # its attached `run --rm` removed it in the guest already
        try:
            self._call(record, "remove", record.id)
        except GuestError:
            pass  # the machine is gone, and the container with it
