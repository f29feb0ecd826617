"""The code the host ships into a machine: the exact runtime and guest tools of this hostrt.

The guest runs the same `backends/linux_native` as the host, byte for byte: the payload is
named by the sha256 of its files, sent once per version (a tar on the SSH channel), and
unpacked beside older versions, so a guest never runs a runtime the host did not ship.
A machine also boots with the payload of the hostrt that started it (`boot_initrd`): its
/init starts the guest daemon at boot, and nothing is shipped for the first run.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from functools import lru_cache
from pathlib import Path

from collections.abc import Callable

REPO = Path(__file__).resolve().parents[2]
GUEST_CODE = "/var/lib/hostrt-guest/code"
# Modules the guest needs besides the runtime package; all standard-library-only
# (tests/lightvm/test_payload.py imports each from the payload alone, without site-packages).
GUEST_MODULES = (
    "hostrt/__init__.py", "hostrt/errors.py", "hostrt/paths.py", "hostrt/locks.py", "hostrt/context.py",
    "hostrt/engine/__init__.py", "hostrt/engine/monitor.py", "hostrt/engine/monitor_client.py",
    "hostrt/engine/supervise.py", "hostrt/engine/runtime_cli.py", "hostrt/engine/runtime_fork.py",
    "hostrt/engine/snapshot.py",
    "hostrt/engine/console.py", "hostrt/engine/logfile.py", "hostrt/engine/failpoints.py",
    "hostrt/network/__init__.py", "hostrt/network/proxy.py", "hostrt/network/ports.py", "hostrt/network/enter.py", "hostrt/network/takeover.py", "hostrt/images/__init__.py", "hostrt/images/errors.py", "hostrt/images/unpack.py",
    "backends/__init__.py", "backends/lightvm/__init__.py", "backends/lightvm/guest_agent.py",
    "backends/lightvm/guestd.py", "backends/lightvm/guest_ports.py",
)
RUNTIME_LAUNCHER = '#!/bin/sh\nPYTHONPATH="$(dirname "$0")" exec python3 -S -m backends.linux_native "$@"\n'


@lru_cache(maxsize=1)
def payload() -> tuple[str, bytes]:
    """(version hash, tar bytes) of everything the guest needs; computed once per process."""
    files = sorted({*GUEST_MODULES, *(p.relative_to(REPO).as_posix() for p in (REPO / "backends" / "linux_native").rglob("*.py"))})
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in files:
            data = (REPO / name).read_bytes()
            digest.update(name.encode() + b"\0" + data)
            _add(tar, name, data, 0o644)
        _add(tar, "hostrt-runtime", RUNTIME_LAUNCHER.encode(), 0o755)
    return digest.hexdigest()[:16], buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def payload_cpio() -> bytes:
    """The payload as an initramfs archive to append to a machine's initrd: the same files at
    the place `ship_payload` unpacks them, parent directories first."""
    import tarfile as tarfile_

    from backends.lightvm.cpio import CpioWriter

    version, data = payload()
    out = io.BytesIO()
    writer = CpioWriter(out)
    made: set[str] = set()
    with tarfile_.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            path = f"{GUEST_CODE.lstrip('/')}/{version}/{member.name}"
            parts = path.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent not in made:
                    made.add(parent)
                    writer.add_dir(parent, 0o755)
            extracted = tar.extractfile(member)
            assert extracted is not None
            writer.add_file(path, extracted.read(), member.mode)
    writer.close()
    return out.getvalue()


def boot_initrd(machine_initrd: Path) -> Path:
    """`machine_initrd` followed by this hostrt's payload: what a fresh boot of the machine
    loads. Made once per payload version beside the machine's initrd (private like it)."""
    import os

    from backends.lightvm.machine_dir import set_mode

    version = payload()[0]
    target = machine_initrd.with_name(f"{machine_initrd.name}.code-{version}")
    if not target.exists():
        for old in machine_initrd.parent.glob(f"{machine_initrd.name}.code-*"):
            old.unlink(missing_ok=True)  # a saved state that named one is discarded: it no longer fits
        tmp = target.with_name(f".{target.name}.tmp")
        with open(tmp, "wb") as out, open(machine_initrd, "rb") as base:
            set_mode(out.fileno(), 0o600)
            while chunk := base.read(1 << 20):
                out.write(chunk)
            out.write(payload_cpio())
        os.replace(tmp, target)
    return target


def payload_dir() -> str:
    """The guest directory of this hostrt's payload (present there once shipped)."""
    return f"{GUEST_CODE}/{payload()[0]}"


def ship_payload(run: Callable[..., tuple[int, bytes, bytes]]) -> str:
    """Ship the payload into the guest, whole or not at all; returns its directory.
    `run(command, stdin=...)` runs a guest command (through the host agent or SSH). Callers
    ship when the guest said the code was missing (the host agent's start of the guest daemon
    checks it): a warm request pays no check of its own."""
    target = payload_dir()
    code, _, err = run(f"test -f {target}/hostrt-runtime || {{ rm -rf {target}.tmp && mkdir -p {target}.tmp "
                       f"&& tar -x -C {target}.tmp && mv {target}.tmp {target}; }}", stdin=payload()[1])
    if code != 0:
        raise OSError(f"cannot ship the runtime to the guest: {err.decode(errors='replace').strip()}")
    return target
