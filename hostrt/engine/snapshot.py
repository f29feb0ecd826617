"""A container's root filesystem: an overlay of the image's shared layer directories plus
a private upper directory, or a full copy where overlayfs is unavailable (some VM guests).

Layer directories hold whiteouts the overlayfs way (0/0 character devices, opaque xattr),
so the copy fallback applies them the same way overlayfs would.

Rootless (hostrt/rootless: root of the user's own user namespace) the kernel's overlayfs
mounts there from Linux 5.11 with `userxattr` (opaque directories as user.overlay.opaque);
where it refuses, fuse-overlayfs mounts the same directories (Podman's fallback), if it is
installed and /dev/fuse is open to the user; the copy comes last.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hostrt.errors import HostrtError

ROOTFS = "rootfs"
COPY_MARKER = "rootfs.is-copy"
MNT_DETACH = 2
_MAX_MOUNT_OPTIONS = 4000  # the kernel copies at most one page of mount data
_ROOTLESS_VARIABLE = "HOSTRT_ROOTLESS_UID"  # set in the user's rootless namespace
FUSE_MARKER = "rootfs.is-fuse"


class SnapshotError(HostrtError):
    """The container's root filesystem could not be assembled or taken apart."""


def _libc():  # noqa: ANN202 - a ctypes library handle
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def is_mounted(path: Path) -> bool:
    target = str(path)
    try:
        with open("/proc/self/mountinfo") as mountinfo:
            return any(line.split()[4] == target for line in mountinfo)
    except OSError:
        return False


def _mount_overlay(lower_dirs: list[Path], upper: Path, work: Path, merged: Path) -> int:
    """0 on success, else the errno of mount(2)."""
    import ctypes

    lowers = ":".join(str(d) for d in reversed(lower_dirs))  # overlayfs lists the top layer first
    options = f"lowerdir={lowers},upperdir={upper},workdir={work}"
    if _ROOTLESS_VARIABLE in os.environ:
        options += ",userxattr"
    if len(options) > _MAX_MOUNT_OPTIONS:
        raise SnapshotError(f"image has too many layers for one overlay mount ({len(lower_dirs)})")
    result = _libc().mount(b"overlay", str(merged).encode(), b"overlay", 0, options.encode())
    return 0 if result == 0 else ctypes.get_errno()


def fuse_overlay_usable() -> bool:
    """fuse-overlayfs is installed and this user may open /dev/fuse."""
    return shutil.which("fuse-overlayfs") is not None and os.access("/dev/fuse", os.R_OK | os.W_OK)


def _mount_fuse_overlay(lower_dirs: list[Path], upper: Path, work: Path, merged: Path) -> bool:
    """The same overlay through fuse-overlayfs (it daemonizes once mounted); False if unusable."""
    import subprocess

    if not fuse_overlay_usable():
        return False
    lowers = ":".join(str(d) for d in reversed(lower_dirs))
    done = subprocess.run(["fuse-overlayfs", "-o", f"lowerdir={lowers},upperdir={upper},workdir={work}", str(merged)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return done.returncode == 0 and is_mounted(merged)


def _copy_layers(lower_dirs: list[Path], merged: Path) -> None:
    """The overlay's view as a copy: each layer onto the last, on held fds (fdtree.py), so
    a layer's symlink (`x -> /etc`) is never followed by a later layer writing `x/...`."""
    from hostrt.engine import fdtree

    opts = fdtree.Options(owner=True, layer=True, replace_dirs=True)
    target = os.open(merged, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for layer in lower_dirs:
            source = os.open(layer, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fdtree.merge_dir(source, target, opts)
            finally:
                os.close(source)
    finally:
        os.close(target)


def mount_rootfs(lower_dirs: list[Path], container_dir: Path, allow_copy: bool = True) -> Path:
    """Assemble the rootfs of the container living in `container_dir`; layers bottom to top."""
    merged = container_dir / ROOTFS
    upper, work = container_dir / "upper", container_dir / "work"
    for directory in (merged, upper, work):
        directory.mkdir(mode=0o755, exist_ok=True)
    error = _mount_overlay(lower_dirs, upper, work, merged)
    if error == 0:
        return merged
    if _ROOTLESS_VARIABLE in os.environ and _mount_fuse_overlay(lower_dirs, upper, work, merged):
        (container_dir / FUSE_MARKER).write_text(f"overlay failed: {os.strerror(error)}\n")
        return merged
    if not allow_copy:
        raise SnapshotError(f"overlay mount failed on {merged}: {os.strerror(error)}")
    (container_dir / COPY_MARKER).write_text(f"overlay failed: {os.strerror(error)}\n")
    _copy_layers(lower_dirs, merged)
    return merged


def unmount_rootfs(container_dir: Path) -> None:
    """Undo `mount_rootfs`: detach the overlay (if mounted) and delete upper, work and rootfs."""
    import ctypes

    merged = container_dir / ROOTFS
    if is_mounted(merged) and _libc().umount2(str(merged).encode(), MNT_DETACH) != 0:
        raise SnapshotError(f"cannot unmount {merged}: {os.strerror(ctypes.get_errno())}")
    for name in (ROOTFS, "upper", "work"):
        path = container_dir / name
        if path.exists() and not is_mounted(path):
            shutil.rmtree(path)
    (container_dir / COPY_MARKER).unlink(missing_ok=True)
    (container_dir / FUSE_MARKER).unlink(missing_ok=True)
