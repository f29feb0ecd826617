"""Reaching libvirtd and naming this root's domains, without the SSH and key modules of `machines.py`
(a container's port forwards need only these, on the path of every `run -p`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from hostrt.errors import BackendUnavailableError

if TYPE_CHECKING:
    import libvirt

DOMAIN_PREFIX = "hostrt-"


def domain_prefix(root: Path) -> str:
    """`hostrt-<tag>-`: one libvirtd serves every hostrt root on the host (a user's, a test's),
    so domain names carry a tag of the machines directory and never collide."""
    import hashlib

    return f"{DOMAIN_PREFIX}{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]}-"


def libvirt_uri() -> str:
    """The system daemon for root, the user's session daemon otherwise."""
    override = os.environ.get("HOSTRT_LIBVIRT_URI")
    if override:
        return override
    if "HOSTRT_ROOTLESS_UID" in os.environ:
        return _rootless_session_uri()
    # Windows has no uids (nor a libvirtd that runs QEMU): a client there talks to a session.
    return "qemu:///system" if getattr(os, "geteuid", lambda: -1)() == 0 else "qemu:///session"


def _rootless_session_uri() -> str:
    """Inside an ordinary user's rootless namespace (hostrt/rootless) the user is uid 0, and
    libvirt would look for the system daemon: the session daemon is reached by its socket
    (it checks the peer's real uid, the user's). Started outside by `hostrt machine` or a
    `--backend lightvm` command, which libvirt spawns it for."""
    directory = f"{os.environ.get('XDG_RUNTIME_DIR') or ''}/libvirt"
    socket = next((f"{directory}/{name}" for name in ("virtqemud-sock", "libvirt-sock")
                   if os.path.exists(f"{directory}/{name}")), f"{directory}/libvirt-sock")
    return f"qemu+unix:///session?socket={socket}"


def _how_to_start() -> str:
    if "HOSTRT_ROOTLESS_UID" in os.environ:
        return "the session daemon is not running: `hostrt machine ls` starts it"
    return "start it: ci/services"


def open_libvirt() -> "libvirt.virConnect":
    """Connect to libvirtd, turning a missing binding or daemon into a one-line error."""
    try:
        import libvirt
    except ImportError as err:
        raise BackendUnavailableError("libvirt-python is not installed: pip install 'hostrt[vm]'") from err
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions; no stderr noise
    try:
        return libvirt.open(libvirt_uri())
    except libvirt.libvirtError as err:
        raise BackendUnavailableError(
            f"cannot connect to libvirtd at {libvirt_uri()}: {err.get_error_message()} ({_how_to_start()})"
        ) from err
