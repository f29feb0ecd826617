"""Stop a machine by saving its state to disk, and start it again by restoring that state.

A first boot under TCG takes seconds before SSH answers (firmware, a 30 MB initramfs, kernel
and init); restoring the saved RAM (~150 MB for an idle guest) takes about two. `machine stop`
saves when it safely can — the guest idle (no running container) and its 9p shares unmounted,
since QEMU refuses to migrate a mounted 9p export — and powers off otherwise. The QEMU process
exits either way, so a stopped machine holds no memory. A state is used once: it is deleted
when restored, and whenever it does not match the machine's current boot files or settings.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from backends.lightvm.machine_dir import MachineDir, SavedRecord, as_json, write_atomic

if TYPE_CHECKING:
    from backends.lightvm.drivers import HypervisorDriver

# Prints the directory of every container whose init is alive and has not ended (no exit file).
RUNNING_CONTAINERS = ("for f in /var/lib/hostrt-guest/containers/*/init.pid; do d=${f%/init.pid}; "
                      "[ -e \"$f\" ] && [ ! -e \"$d/exit.json\" ] && kill -0 \"$(cat \"$f\")\" 2>/dev/null && echo \"$d\"; "
                      "done; true")
# Run in the guest before saving: "busy" while a container runs or a 9p share stays mounted.
_QUIESCE = (f"[ -n \"$({RUNNING_CONTAINERS})\" ] && {{ echo busy; exit 0; }}; "
            "for m in $(awk '$3 == \"9p\" {print $2}' /proc/mounts); do umount \"$m\" || { echo busy; exit 0; }; done; "
            "sync; echo idle")
_RESYNC_CLOCK = "hwclock -u -s"  # the guest's clock stood still while saved; the RTC follows the host's


def quiesce(client: Any) -> bool:
    """Ready the guest for saving (shares unmounted); False if a container runs or a share is busy."""
    from backends.lightvm.ssh import run

    code, out, _ = run(client, _QUIESCE, timeout=30)
    return code == 0 and out.strip() == b"idle"


def save(machine: MachineDir, driver: "HypervisorDriver", virt_type: str, ssh_port: int) -> bool:
    """Save the (quiesced) guest into the machine's directory; its QEMU is gone afterwards."""
    boot = machine.boot()
    record = SavedRecord(virt_type=virt_type, ssh_port=ssh_port, recipe_hash=boot.recipe_hash, kernel=boot.kernel,
                         settings=machine.settings_file.read_text(), saved_at=time.time(), driver=driver.name)
    if not driver.save(machine):
        discard(machine)
        return False
    os.chmod(machine.saved_state, 0o600)
    write_atomic(machine.saved_file, as_json(record))
    return True


def saved(machine: MachineDir, virt_type: str, driver: str) -> SavedRecord | None:
    """The saved state's record if it can be restored as this machine now is; else discard it."""
    try:
        record = SavedRecord.model_validate_json(machine.saved_file.read_text())
    except (OSError, ValueError):
        discard(machine)
        return None
    boot = machine.boot()
    current = (virt_type, boot.recipe_hash, boot.kernel, machine.settings_file.read_text(), driver)
    if (record.virt_type, record.recipe_hash, record.kernel, record.settings, record.driver) != current \
            or not machine.saved_state.exists():
        discard(machine)
        return None
    return record


def restore(machine: MachineDir, driver: "HypervisorDriver") -> bool:
    """Bring the saved guest back (its SSH forward is the saved one); the state is used up.
    False (e.g. the saved SSH port is taken now) means: the caller boots afresh."""
    try:
        return driver.restore(machine)
    finally:
        discard(machine)


def resync_clock(client: Any) -> None:
    from backends.lightvm.ssh import run

    run(client, _RESYNC_CLOCK)


def discard(machine: MachineDir) -> None:
    machine.saved_state.unlink(missing_ok=True)
    machine.saved_file.unlink(missing_ok=True)


def describe(machine: MachineDir) -> dict | None:
    """For `machine inspect`: when the state was saved and its size, if there is one."""
    try:
        record = json.loads(machine.saved_file.read_text())
        return {"saved_at": record["saved_at"], "bytes": machine.saved_state.stat().st_size}
    except (OSError, ValueError, KeyError):
        return None
