"""The libvirt driver: each running machine is a transient domain of a libvirtd.

A transient domain vanishes when the guest powers off or is destroyed, so a stopped machine
holds no memory and nothing needs undefining. A domain left behind by a killed hostrt is
still named after its machine (`domain_prefix`): `orphans` reports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from backends.lightvm.libvirt_conn import domain_prefix, open_libvirt

if TYPE_CHECKING:
    import libvirt

    from backends.lightvm.domain import BootFiles, SharedDir
    from backends.lightvm.machine_dir import MachineDir
    from backends.lightvm.settings import MachineSettings, VirtType


class LibvirtDriver:
    """Machines under `root` as libvirt domains named `hostrt-<tag of root>-<machine>`."""

    name = "libvirt"

    def __init__(self, root: Path) -> None:
        self.prefix = domain_prefix(root)

    def _domain(self, machine: MachineDir) -> "libvirt.virDomain | None":
        import libvirt

        try:
            return open_libvirt().lookupByName(self.prefix + machine.name)
        except libvirt.libvirtError:
            return None

    def boot(self, machine: MachineDir, settings: MachineSettings, boot: BootFiles, virt_type: VirtType,
             ssh_port: int, shares: tuple[SharedDir, ...]) -> None:
        import libvirt

        from backends.lightvm.domain import render_domain
        from backends.lightvm.machines import MachineError

        xml = render_domain(settings, boot, virt_type, ssh_port, shares, self.prefix + machine.name)
        try:
            open_libvirt().createXML(xml, 0)
        except libvirt.libvirtError as err:
            raise MachineError(f"machine {machine.name} failed to start: {err.get_error_message()}") from err

    def alive(self, machine: MachineDir) -> bool:
        import libvirt

        domain = self._domain(machine)
        try:
            return domain is not None and bool(domain.isActive())
        except libvirt.libvirtError:
            return False

    def destroy(self, machine: MachineDir) -> None:
        import libvirt

        domain = self._domain(machine)
        try:
            if domain is not None and domain.isActive():
                domain.destroy()
        except libvirt.libvirtError:
            pass  # it went meanwhile

    def save(self, machine: MachineDir) -> bool:
        import libvirt

        domain = self._domain(machine)
        try:
            return domain is not None and domain.save(str(machine.saved_state)) == 0
        except libvirt.libvirtError:
            return False

    def restore(self, machine: MachineDir) -> bool:
        import libvirt

        try:
            return open_libvirt().restore(str(machine.saved_state)) == 0
        except libvirt.libvirtError:
            return False  # e.g. the saved SSH port is taken now: the caller boots afresh

    def monitor(self, machine: MachineDir, command: str) -> str:
        import libvirt
        import libvirt_qemu

        from backends.lightvm.ports import PortForwardError

        try:
            found = open_libvirt().lookupByName(self.prefix + machine.name)
            return libvirt_qemu.qemuMonitorCommand(found, command, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP).strip()
        except libvirt.libvirtError as err:
            raise PortForwardError(f"cannot reach the monitor of machine {machine.name}: {err.get_error_message()}") from None

    def describe(self, machine: MachineDir) -> dict[str, str]:
        return {"driver": self.name, "domain": self.prefix + machine.name}

    def orphans(self) -> list[str]:
        """Every machine of this root with an active domain; the caller drops those with a directory."""
        return [d.name()[len(self.prefix):] for d in open_libvirt().listAllDomains() if d.name().startswith(self.prefix)]
