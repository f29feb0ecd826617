"""Address leases for one network: a JSON file rewritten whole (temp + rename) under a lock.

Concurrent `run`s each take the lock, pick the lowest free address and write the file
before releasing it, so two containers never share an address. The lock also guards
whatever must follow the number of leases (the default bridge exists while it has any).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hostrt.locks import file_lock


class AddressesExhaustedError(RuntimeError):
    """Every host address of the subnet is leased."""


class Leases:
    """`<dir>/<network>.leases.json`: {container id: address}, guarded by `<network>.lock`."""

    def __init__(self, directory: Path, network: str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / f"{network}.leases.json"
        self.lock_path = self.directory / f"{network}.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, str]]:
        """The leases, held exclusively; changes to the dict are written on a clean exit."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with file_lock(self.lock_path):
            leases = self.read()
            before = dict(leases)
            yield leases
            if leases != before:
                self._write(leases)

    def read(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _write(self, leases: dict[str, str]) -> None:
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".leases-")
        with os.fdopen(fd, "w") as out:
            json.dump(leases, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.path)


def pick_address(subnet: str, gateway: str, leases: dict[str, str]) -> str:
    """The lowest host address that is neither the gateway nor leased."""
    taken = set(leases.values()) | {gateway}
    for host in ipaddress.ip_network(subnet).hosts():
        if str(host) not in taken:
            return str(host)
    raise AddressesExhaustedError(f"no free address left in {subnet}")
