"""hostrt's data and run roots, closed to every other user of the host.

A container's files live under the data root: its upper directory, where a process in the
container can make a setuid-root copy of a shell, and the unpacked image layers, which can
hold setuid binaries of their own. A host user who can walk to them can run them as root
(Docker's CVE-2021-41091). Hiding the names is no defence: overlayfs shows every container's
`upperdir=` path in /proc/self/mountinfo, which anyone may read, so a root that others may
traverse but not list (0701, 0711: Docker's modes before that fix) still lets them in.

Both roots are therefore 0700 and owned by the user hostrt runs as. Docker settled on 0710
with the group of its user-namespace-remapped root, the one other identity that must reach
the layers; hostrt remaps no root, so the group bit would only admit whatever group the
directory happened to get (a setgid parent passes its own on). Nothing else needs a way in:
the runtime, the monitor and the engine run as the owner, and a container's processes see
their root through pivot_root, never through these paths.

An install made by an older hostrt (0755 directories) is closed the first time a command
uses it: the roots and the directories hostrt keeps directly under them are chmodded once.
Every command pays one stat per root to find out that nothing needs doing.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from hostrt.errors import HostrtError
from hostrt.paths import Paths

PRIVATE_MODE = 0o700
# What hostrt keeps directly under each root: closed too when an old install is first used,
# so that they stay closed if someone opens the root again (to share the image store, say).
DATA_DIRS = ("containers", "layers", "store", "machines", "cache", "networks")
RUN_DIRS = ("runtime", "netns")


def secure(paths: Paths) -> None:
    """Create the data and run roots 0700, or close them if an older hostrt left them open."""
    if sys.platform == "win32":
        return  # the per-user profile directory is already the user's alone
    secure_dir(paths.root, DATA_DIRS)
    secure_dir(paths.run, RUN_DIRS)


def secure_dir(directory: Path, children: tuple[str, ...] = ()) -> None:
    """`directory` exists, is ours and is 0700; `children` lose group and other access if it was open."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(directory, PRIVATE_MODE)
        except FileExistsError:
            pass  # another hostrt made it meanwhile: checked below like any existing one
        st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise HostrtError(f"{directory} is not a directory: hostrt keeps its containers there")
    if st.st_uid != os.geteuid():
        if os.geteuid() != 0:
            raise HostrtError(f"{directory} belongs to another user (uid {st.st_uid}): hostrt will not keep "
                              "containers where someone else can reach them")
        os.chown(directory, 0, 0)  # as Docker does with its roots: root's containers, root's directory
    mode = stat.S_IMODE(st.st_mode)
    if mode == PRIVATE_MODE:
        return
    if mode & stat.S_IWOTH and mode & stat.S_ISVTX:
        raise HostrtError(f"{directory} is a shared directory (like /tmp): give hostrt a directory of its own")
    os.chmod(directory, PRIVATE_MODE)
    if mode & 0o077:
        for name in children:
            _close_child(directory / name)


def _close_child(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)
