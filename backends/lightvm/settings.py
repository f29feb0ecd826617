"""A machine's settings: what the user chose at `machine init`, stored as JSON in its directory."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

GuestArch = Literal["amd64", "arm64"]
VirtType = Literal["kvm", "hvf", "whpx", "qemu"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")

# OCI architecture -> what libvirt and QEMU call it, the machine type, and the guest console.
GUEST_ARCH_FACTS: dict[str, dict[str, str]] = {
    "amd64": {"libvirt_arch": "x86_64", "machine": "q35", "console": "ttyS0", "emulator": "qemu-system-x86_64"},
    "arm64": {"libvirt_arch": "aarch64", "machine": "virt", "console": "ttyAMA0", "emulator": "qemu-system-aarch64"},
}


def default_shares() -> list[str]:
    """The user's home and the temporary directory, the places `-v` sources usually live;
    resolved, as `-v` sources are (macOS' $TMPDIR and /tmp lie in /private)."""
    import tempfile
    from pathlib import Path

    from hostrt.host_paths import resolved

    return list(dict.fromkeys([resolved(str(Path.home())), resolved(tempfile.gettempdir())]))


class MachineSettings(BaseModel):
    """The durable description of one machine; the libvirt domain is rendered from it."""

    name: str
    arch: GuestArch
    cpus: int = Field(default=2, ge=1, le=64)
    memory_mib: int = Field(default=1024, ge=128, le=65536)
    # Host directories the guest can mount (9p), so `-v HOSTDIR:...` works inside the machine;
    # as Docker Desktop and Lima share the user's home, hostrt shares $HOME and /tmp by default.
    shares: list[str] = Field(default_factory=list)
    # A machine with no command and no running container for this long is stopped by its host
    # agent, which gives its memory back; 0 keeps it up until `machine stop`.
    idle_timeout_s: int = Field(default=1800, ge=0)
    # What runs the machine's QEMU (backends/lightvm/drivers); machines made before there was a
    # choice were libvirt's.
    driver: Literal["libvirt", "qemu"] = "libvirt"

    @field_validator("shares")
    @classmethod
    def _absolute_shares(cls, shares: list[str]) -> list[str]:
        from hostrt.host_paths import is_absolute

        for share in shares:
            if not is_absolute(share):
                raise ValueError(f"shared directory {share!r} must be an absolute path")
        return shares

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"invalid machine name {name!r}: use lowercase letters, digits, '.', '_' and '-'")
        return name

    def share_for(self, host_path: str) -> tuple[int, str] | None:
        """(share index, POSIX path below that share) of a host path the machine can see, else
        None; compared on real paths (a machine made with an unresolved $TMPDIR still matches)."""
        from hostrt.host_paths import below

        for index, share in enumerate(self.shares):
            inside = below(host_path, share)
            if inside is not None:
                return index, inside
        return None

    @property
    def domain_name(self) -> str:
        """The libvirt domain name; the prefix lets `machine ls` find domains a killed hostrt left."""
        return f"hostrt-{self.name}"
