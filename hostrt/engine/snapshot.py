"""A container's root filesystem: an overlay of the image's shared layer directories plus
a private upper directory, or a full copy where overlayfs is unavailable (some VM guests).

Layer directories hold whiteouts the overlayfs way (0/0 character devices, opaque xattr),
so the copy fallback applies them the same way overlayfs would.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from hostrt.errors import HostrtError

ROOTFS = "rootfs"
COPY_MARKER = "rootfs.is-copy"
OPAQUE_XATTR = "trusted.overlay.opaque"
OPAQUE_FILE = ".wh..wh..opq"
WHITEOUT_PREFIX = ".wh."
MNT_DETACH = 2
_MAX_MOUNT_OPTIONS = 4000  # the kernel copies at most one page of mount data


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
    if len(options) > _MAX_MOUNT_OPTIONS:
        raise SnapshotError(f"image has too many layers for one overlay mount ({len(lower_dirs)})")
    result = _libc().mount(b"overlay", str(merged).encode(), b"overlay", 0, options.encode())
    return 0 if result == 0 else ctypes.get_errno()


def _is_whiteout(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(directory: Path) -> bool:
    if (directory / OPAQUE_FILE).exists():
        return True
    try:
        return os.getxattr(directory, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _apply_layer(layer: Path, target: Path) -> None:
    """Copy one layer onto `target` with overlayfs semantics for whiteouts and opaque dirs."""
    for dirpath, dirnames, filenames in os.walk(layer):
        src_dir = Path(dirpath)
        dst_dir = target / src_dir.relative_to(layer)
        if src_dir != layer and _is_opaque(src_dir) and dst_dir.is_dir():
            for child in list(dst_dir.iterdir()):
                _remove(child)
        for name in list(dirnames):
            src, dst = src_dir / name, dst_dir / name
            if src.is_symlink():
                dirnames.remove(name)
                _remove(dst)
                os.symlink(os.readlink(src), dst)
                continue
            if dst.exists() and not dst.is_dir():
                _remove(dst)
            dst.mkdir(exist_ok=True)
            shutil.copystat(src, dst, follow_symlinks=False)
        for name in filenames:
            src, dst = src_dir / name, dst_dir / name
            if name == OPAQUE_FILE:
                continue
            if name.startswith(WHITEOUT_PREFIX):  # unprivileged unpack keeps whiteouts as marker files
                _remove(dst_dir / name[len(WHITEOUT_PREFIX):])
                continue
            if not src.is_symlink() and _is_whiteout(src):
                _remove(dst)
                continue
            _remove(dst)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copy2(src, dst, follow_symlinks=False)


def mount_rootfs(lower_dirs: list[Path], container_dir: Path, allow_copy: bool = True) -> Path:
    """Assemble the rootfs of the container living in `container_dir`; layers bottom to top."""
    merged = container_dir / ROOTFS
    upper, work = container_dir / "upper", container_dir / "work"
    for directory in (merged, upper, work):
        directory.mkdir(mode=0o755, exist_ok=True)
    error = _mount_overlay(lower_dirs, upper, work, merged)
    if error == 0:
        return merged
    if not allow_copy:
        raise SnapshotError(f"overlay mount failed on {merged}: {os.strerror(error)}")
    (container_dir / COPY_MARKER).write_text(f"overlay failed: {os.strerror(error)}\n")
    for layer in lower_dirs:
        _apply_layer(layer, merged)
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
