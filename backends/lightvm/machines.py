"""Machine lifecycle: init, start, stop, remove, list. One QEMU per running machine, run by the
machine's hypervisor driver (`drivers/`: libvirt or QEMU itself).

QEMU exits whenever the guest powers off or is stopped, so a stopped machine holds no memory.
A libvirt domain left behind by a killed hostrt is still named after its machine:
`list_machines` reports it as an orphan and `remove_machine` destroys it.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backends.lightvm import keys, suspend
from backends.lightvm.domain import BootFiles, SharedDir
from backends.lightvm.drivers import driver_for
from backends.lightvm.machine_dir import BootRecord, MachineDir, RunRecord, as_json, set_mode, write_atomic
from backends.lightvm.settings import GUEST_ARCH_FACTS, MachineSettings, VirtType
from backends.lightvm.ssh import SshTarget, run, wait_ready
from hostrt.errors import BackendUnavailableError, HostrtError, NotFoundError, UsageError

if TYPE_CHECKING:
    import paramiko

    from backends.lightvm.drivers import HypervisorDriver
    from backends.lightvm.guest_image import GuestImage

# Time for a guest to accept SSH: TCG boots take 10-20 s for amd64, several times more for arm64.
READY_TIMEOUT = {"kvm": 60.0, "hvf": 60.0, "whpx": 60.0, "qemu": 240.0}
ARM64_TCG_FACTOR = 3


class MachineError(HostrtError):
    """A machine could not be created, started or reached."""


@dataclass(frozen=True)
class MachineStatus:
    """What `machine ls` shows for one machine (or one orphaned domain)."""

    name: str
    arch: str | None
    state: str  # running, stopped, orphan (a domain without a machine directory)
    ssh_port: int | None
    virt_type: str | None
    driver: str | None = None


def machine_dir(root: Path, name: str) -> MachineDir:
    MachineSettings(name=name, arch="amd64")  # validates the name before it becomes a path
    return MachineDir(root / name)


def existing(root: Path, name: str) -> MachineDir:
    found = machine_dir(root, name)
    if not found.settings_file.exists():
        raise NotFoundError(f"no such machine: {name}")
    return found


def init_machine(root: Path, settings: MachineSettings, guest: "GuestImage") -> MachineDir:
    """Create the machine directory whole, or leave nothing: built aside, then renamed into place."""
    from backends.lightvm.guest_image import dropbear_ed25519_host_key, machine_overlay

    if guest.arch != settings.arch:
        raise UsageError(f"guest image is {guest.arch}, machine {settings.name} is {settings.arch}")
    target = machine_dir(root, settings.name)
    if target.path.exists():
        raise UsageError(f"machine {settings.name} already exists")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = MachineDir(Path(tempfile.mkdtemp(dir=root, prefix=f".{settings.name}.")))
    try:
        client_key, host_key = keys.new_key(), keys.new_key()
        keys.write_private(staging.client_key, keys.openssh_private(client_key))
        write_atomic(staging.client_pub, keys.openssh_public(client_key, f"hostrt@{settings.name}").encode() + b"\n", 0o644)
        write_atomic(staging.host_key_pub, keys.openssh_public(host_key).encode() + b"\n", 0o644)
        overlay = machine_overlay(
            authorized_key=keys.openssh_public(client_key),
            host_key_dropbear=dropbear_ed25519_host_key(host_key),
            hostname=settings.name,
        )
        # The initrd holds the guest's private host key: 0600 like any key file.
        with open(staging.initrd, "xb") as out, open(guest.initramfs, "rb") as base:
            set_mode(out.fileno(), 0o600)
            shutil.copyfileobj(base, out, 1 << 20)
            out.write(overlay)
        write_atomic(staging.boot_file, as_json(BootRecord(kernel=str(guest.kernel), recipe_hash=guest.recipe_hash)))
        write_atomic(staging.settings_file, as_json(settings))
        os.rename(staging.path, target.path)
    except BaseException:
        shutil.rmtree(staging.path, ignore_errors=True)
        raise
    return target


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def driver_of(machine: MachineDir) -> "HypervisorDriver":
    """The driver the machine was created with (its settings say which)."""
    return driver_for(machine.path.parent, machine.settings().driver)


def ssh_target(machine: MachineDir) -> SshTarget:
    record = machine.run_record()
    if record is None:
        raise MachineError(f"machine {machine.name} is not running (hostrt machine start {machine.name})")
    return SshTarget(port=record.ssh_port, client_key=machine.client_key, host_key_line=machine.host_key_pub.read_text().strip())


def start_machine(root: Path, name: str, virt_type: VirtType) -> tuple[MachineDir, "paramiko.SSHClient"]:
    """Boot the machine (if not running) and return an SSH session once the guest accepts one."""
    machine = existing(root, name)
    settings = machine.settings()
    driver = driver_of(machine)
    record = machine.run_record()
    running = driver.alive(machine)
    if running and record is not None:
        deadline = time.monotonic() + 30
        return machine, wait_ready(ssh_target(machine), deadline, lambda: driver.alive(machine))
    if running:
        driver.destroy(machine)  # a guest without a run record was left by a killed hostrt
    resumed = _resume(machine, driver, virt_type)
    if resumed is not None:
        return machine, resumed
    facts = GUEST_ARCH_FACTS[settings.arch]
    emulator = shutil.which(facts["emulator"])
    if emulator is None:
        raise BackendUnavailableError(f"{facts['emulator']} not found on PATH: install QEMU for {settings.arch}")
    port = _free_loopback_port()
    machine.console_log.unlink(missing_ok=True)
    from backends.lightvm.payload import boot_initrd

    # The guest boots with this hostrt's code, and its /init starts the guest daemon: a first run ships nothing.
    boot = BootFiles(kernel=Path(machine.boot().kernel), initrd=boot_initrd(machine.initrd),
                     console_log=machine.console_log, emulator=Path(emulator))
    started = time.monotonic()
    shares = tuple(SharedDir(Path(path), f"share{index}") for index, path in enumerate(settings.shares)
                   if Path(path).is_dir())
    driver.boot(machine, settings, boot, virt_type, port, shares)
    timeout = READY_TIMEOUT[virt_type] * (ARM64_TCG_FACTOR if settings.arch == "arm64" and virt_type == "qemu" else 1)
    target = SshTarget(port=port, client_key=machine.client_key, host_key_line=machine.host_key_pub.read_text().strip())
    try:
        client = wait_ready(target, started + timeout, lambda: driver.alive(machine), console=machine.console_log)
    except Exception as err:
        driver.destroy(machine)
        raise MachineError(f"machine {name} did not become ready: {err}\n--- console ---\n{machine.console_tail()}") from err
    ready_seconds = time.monotonic() - started
    machine.write_run_record(RunRecord(driver=driver.name, virt_type=virt_type, ssh_port=port,
                                       started_at=time.time(), ready_seconds=ready_seconds))
    from backends.lightvm.start_stats import record_start

    record_start(machine.path, "boot", ready_seconds, virt_type)
    return machine, client


def _resume(machine: MachineDir, driver: "HypervisorDriver", virt_type: str) -> "paramiko.SSHClient | None":
    """Restore the state saved at the last stop, if it fits; None means: boot afresh."""
    state = suspend.saved(machine, virt_type, driver.name)
    if state is None:
        return None
    started = time.monotonic()
    if not suspend.restore(machine, driver):
        return None
    target = SshTarget(port=state.ssh_port, client_key=machine.client_key,
                       host_key_line=machine.host_key_pub.read_text().strip())
    try:
        client = wait_ready(target, started + 60, lambda: driver.alive(machine))
        suspend.resync_clock(client)
    except Exception:  # noqa: BLE001 - a state that does not come back is discarded already: boot
        driver.destroy(machine)
        return None
    ready_seconds = time.monotonic() - started
    machine.write_run_record(RunRecord(driver=driver.name, virt_type=virt_type, ssh_port=state.ssh_port,
                                       started_at=time.time(), ready_seconds=ready_seconds, resumed=True))
    from backends.lightvm.start_stats import record_start

    record_start(machine.path, "resume", ready_seconds, virt_type)
    return client


def stop_machine(root: Path, name: str, grace: float = 15.0, save_state: bool = True) -> bool:
    """Save the guest's state to disk when it is idle (`save_state`), else power it off (destroy it
    if it does not go in `grace` s). Either way QEMU exits. False if it was not running."""
    from backends.lightvm.hostagent import stop_agent

    machine = existing(root, name)
    stop_agent(machine.path)
    driver = driver_of(machine)
    was_running = driver.alive(machine)
    record = machine.run_record()
    if was_running and record is not None:
        from backends.lightvm.ssh import connect

        try:
            client = connect(ssh_target(machine), timeout=5)
            idle = save_state and suspend.quiesce(client)
            if not idle:
                client.exec_command("poweroff")
            client.close()
            if idle:
                if suspend.save(machine, driver, record.virt_type, record.ssh_port):
                    machine.run_file.unlink(missing_ok=True)
                    return True
                driver.destroy(machine)  # quiesced and diskless: nothing is lost that poweroff would keep
        except Exception:
            pass  # the guest is unreachable: destroy below
        deadline = time.monotonic() + grace
        while driver.alive(machine) and time.monotonic() < deadline:
            time.sleep(0.2)
    driver.destroy(machine)
    machine.run_file.unlink(missing_ok=True)
    return was_running


def _libvirt_orphans(root: Path) -> list[str]:
    """Machines under `root` with a libvirt domain, where a libvirtd is reachable (else none)."""
    from backends.lightvm.drivers import libvirt_unreachable

    if libvirt_unreachable() is not None:
        return []
    from backends.lightvm.drivers.libvirt_driver import LibvirtDriver

    try:
        return LibvirtDriver(root).orphans()
    except BackendUnavailableError:
        return []


def remove_machine(root: Path, name: str) -> None:
    """Stop the machine's QEMU (even an orphaned domain's) and delete its directory."""
    target = machine_dir(root, name)
    from backends.lightvm.hostagent import stop_agent

    if target.settings_file.exists():
        driver_of(target).destroy(target)
    elif name in _libvirt_orphans(root):
        from backends.lightvm.drivers.libvirt_driver import LibvirtDriver

        LibvirtDriver(root).destroy(target)
    elif not target.path.exists():
        raise NotFoundError(f"no such machine: {name}")
    stop_agent(target.path)
    shutil.rmtree(target.path, ignore_errors=True)


def list_machines(root: Path) -> list[MachineStatus]:
    """Every machine directory, and every libvirt domain of this root with no directory (an orphan)."""
    found: list[MachineStatus] = []
    names = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []
    for name in names:
        machine = MachineDir(root / name)
        try:
            settings = machine.settings()
        except (OSError, ValueError):
            continue
        record = machine.run_record()
        alive = driver_of(machine).alive(machine)
        found.append(MachineStatus(name=name, arch=settings.arch, state="running" if alive else "stopped",
                                   ssh_port=record.ssh_port if alive and record else None,
                                   virt_type=record.virt_type if alive and record else None, driver=settings.driver))
    for name in sorted(set(_libvirt_orphans(root)) - set(names)):
        found.append(MachineStatus(name=name, arch=None, state="orphan", ssh_port=None, virt_type=None, driver="libvirt"))
    return found


def guest_exec(root: Path, name: str, command: str) -> tuple[int, bytes, bytes]:
    """Run one command in a running machine's guest over a fresh session."""
    from backends.lightvm.ssh import connect

    import paramiko

    machine = existing(root, name)
    try:
        client = connect(ssh_target(machine))
    except (OSError, paramiko.SSHException) as err:
        raise MachineError(f"cannot reach machine {name}: {err} (is it running? hostrt machine start {name})") from None
    try:
        return run(client, command)
    finally:
        client.close()
