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


class MachineSettings(BaseModel):
    """The durable description of one machine; the libvirt domain is rendered from it."""

    name: str
    arch: GuestArch
    cpus: int = Field(default=2, ge=1, le=64)
    memory_mib: int = Field(default=1024, ge=128, le=65536)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"invalid machine name {name!r}: use lowercase letters, digits, '.', '_' and '-'")
        return name

    @property
    def domain_name(self) -> str:
        """The libvirt domain name; the prefix lets `machine ls` find domains a killed hostrt left."""
        return f"hostrt-{self.name}"
