"""The hypervisor seam: what the machine layer asks of whatever runs a guest's QEMU.

Two drivers sit behind it. `libvirt` hands QEMU to a libvirtd (Linux; one daemon for every
VM of the host, with its own save format). `qemu` starts `qemu-system-*` itself and controls
it over QMP; it is the only driver on macOS and Windows, where libvirt cannot run QEMU, and it
is chosen on Linux when no libvirtd is reachable. A machine keeps the driver it was created
with (`MachineSettings.driver`), so a stopped machine is always started the way it was saved.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, get_args

from hostrt.errors import UsageError

if TYPE_CHECKING:
    from backends.lightvm.domain import BootFiles, SharedDir
    from backends.lightvm.machine_dir import MachineDir
    from backends.lightvm.settings import MachineSettings, VirtType

DriverName = Literal["libvirt", "qemu"]
DRIVER_ENV = "HOSTRT_MACHINE_DRIVER"  # the driver for machines created without --driver


class HypervisorDriver(Protocol):
    """Runs one QEMU per machine; every call names the machine by its directory."""

    name: DriverName

    def boot(self, machine: MachineDir, settings: MachineSettings, boot: BootFiles, virt_type: VirtType,
             ssh_port: int, shares: tuple[SharedDir, ...]) -> None:
        """Start the guest (SSH forwarded from 127.0.0.1:`ssh_port`); raise MachineError if QEMU refuses."""

    def alive(self, machine: MachineDir) -> bool:
        """Whether the machine's QEMU runs."""

    def destroy(self, machine: MachineDir) -> None:
        """Stop the machine's QEMU at once (the guest is not asked); nothing if it does not run."""

    def save(self, machine: MachineDir) -> bool:
        """Write the (quiesced) guest's state to `machine.saved_state`; QEMU is gone afterwards."""

    def restore(self, machine: MachineDir) -> bool:
        """Start QEMU again from `machine.saved_state`; False if that state cannot be brought back."""

    def monitor(self, machine: MachineDir, command: str) -> str:
        """One human-monitor (HMP) command, e.g. `hostfwd_add`; its output, "" when all went well."""

    def describe(self, machine: MachineDir) -> dict[str, str]:
        """What `machine inspect` shows of the running QEMU (a domain name, a pid, a QMP address)."""

    def orphans(self) -> list[str]:
        """Names of machines whose QEMU runs although their directory is gone."""


def driver_for(root: Path, name: DriverName) -> HypervisorDriver:
    """The driver `name`, for the machines under `root`."""
    if name == "libvirt":
        from backends.lightvm.drivers.libvirt_driver import LibvirtDriver

        return LibvirtDriver(root)
    from backends.lightvm.drivers.qemu_driver import QemuDriver

    return QemuDriver(root)


def libvirt_unreachable() -> str | None:
    """Why no libvirtd can run this user's machines here, or None if one can."""
    if not sys.platform.startswith("linux"):
        return f"libvirt cannot run QEMU on {sys.platform}"
    from importlib.util import find_spec

    from backends.lightvm.libvirt_conn import libvirt_uri

    if find_spec("libvirt") is None:  # found, not imported: `hostrt info` stays fast
        return "libvirt-python is not installed"
    uri = libvirt_uri()
    if uri == "qemu:///system":
        sockets = ("/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock")
        if not any(os.path.exists(path) for path in sockets):
            return "libvirtd is not running (no /run/libvirt/libvirt-sock)"
        return None
    if uri.startswith("qemu:///session") and not any(shutil.which(d, path=f"{os.environ.get('PATH', '')}:/usr/sbin")
                                                    for d in ("libvirtd", "virtqemud")):
        return "no libvirtd to start a session daemon"
    return None


def choose_driver(forced: str | None = None) -> tuple[DriverName, str]:
    """The driver for a new machine and why: `forced` (machine init --driver), else $HOSTRT_MACHINE_DRIVER,
    else libvirt where a libvirtd is reachable and QEMU itself otherwise."""
    wanted = forced or os.environ.get(DRIVER_ENV) or None
    if wanted is not None:
        if wanted not in get_args(DriverName):
            raise UsageError(f"invalid driver {wanted!r}: use libvirt or qemu")
        if wanted == "libvirt" and (missing := libvirt_unreachable()):
            raise UsageError(f"driver libvirt is not usable here: {missing}")
        return wanted, "chosen with --driver" if forced else f"chosen by {DRIVER_ENV}"  # type: ignore[return-value]
    missing = libvirt_unreachable()
    if missing is None:
        return "libvirt", "a libvirtd is reachable"
    return "qemu", f"QEMU started directly ({missing})"
