"""One directory per machine: its settings, keys, boot files, console log and run record."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from backends.lightvm.settings import MachineSettings


class BootRecord(BaseModel):
    """Which guest image the machine boots (the kernel lives in the shared guest-image cache)."""

    kernel: str
    recipe_hash: str


class RunRecord(BaseModel):
    """Facts of the running domain, written at start and removed at stop."""

    virt_type: str
    ssh_port: int
    started_at: float
    ready_seconds: float
    resumed: bool = False  # restored from the state saved at the last stop, not booted
    driver: str = "libvirt"  # what runs it; records from before there was a choice were libvirt's


class SavedRecord(BaseModel):
    """What a saved machine state was taken from: restored only onto the same boot files."""

    virt_type: str
    ssh_port: int
    recipe_hash: str
    driver: str = "libvirt"  # a state is restored only by the driver that saved it (their formats differ)
    kernel: str
    settings: str  # the settings JSON: a changed machine boots afresh
    saved_at: float


@dataclass(frozen=True)
class MachineDir:
    """The files of one machine; a private directory (0700) because it holds private keys."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    settings_file = property(lambda self: self.path / "machine.json")
    boot_file = property(lambda self: self.path / "boot.json")
    run_file = property(lambda self: self.path / "run.json")
    client_key = property(lambda self: self.path / "id_ed25519")
    client_pub = property(lambda self: self.path / "id_ed25519.pub")
    host_key_pub = property(lambda self: self.path / "host_key.pub")
    initrd = property(lambda self: self.path / "initrd.img")
    console_log = property(lambda self: self.path / "console.log")
    saved_state = property(lambda self: self.path / "saved.state")  # guest RAM: holds its host key, 0600
    saved_file = property(lambda self: self.path / "saved.json")

    def settings(self) -> MachineSettings:
        return MachineSettings.model_validate_json(self.settings_file.read_text())

    def boot(self) -> BootRecord:
        return BootRecord.model_validate_json(self.boot_file.read_text())

    def run_record(self) -> RunRecord | None:
        try:
            return RunRecord.model_validate_json(self.run_file.read_text())
        except (OSError, ValueError):
            return None

    def write_run_record(self, record: RunRecord) -> None:
        write_atomic(self.run_file, record.model_dump_json().encode())

    def console_tail(self, lines: int = 15) -> str:
        """The last lines of the serial console, for error messages about a guest that failed."""
        try:
            text = self.console_log.read_bytes().decode(errors="replace")
        except OSError:
            return "(no console output)"
        tail = [line.rstrip("\r") for line in text.splitlines()[-lines:]]
        return "\n".join(tail) or "(no console output)"


def set_mode(fd: int, mode: int) -> None:
    """chmod an open file where the OS has modes. Windows has none (and its Python before 3.13
    no os.fchmod): there a machine's files are private through the ACL of the user's profile
    directory they are created in."""
    fchmod = getattr(os, "fchmod", None)
    if fchmod is not None:
        fchmod(fd, mode)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a file whole or not at all (temp file in the same directory, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        set_mode(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def as_json(model: BaseModel) -> bytes:
    return json.dumps(model.model_dump(mode="json"), indent=2).encode()
