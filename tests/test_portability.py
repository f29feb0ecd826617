"""Host rules that differ per OS, checked on whichever host the test runs on.

Run on Linux, macOS and Windows CI runners (and under the simulated macOS and Windows
Pythons of tests/test_simulated_hosts.py): paths as the host spells them, share roots,
`-v` sources, and the guest payload, whose names must not depend on the host.
"""

from __future__ import annotations

import ntpath
import os
import sys
from pathlib import Path

import pytest

from hostrt import host_paths
from hostrt.engine.options import parse_volume
from hostrt.errors import UsageError

pytestmark = pytest.mark.portable

WINDOWS = sys.platform == "win32"


@pytest.mark.parametrize(("text", "parts"), [
    (r"C:\src:/src", [r"C:\src", "/src"]),
    ("C:/src:/src:ro", ["C:/src", "/src", "ro"]),
    (r"d:\data\x:/x:rw", [r"d:\data\x", "/x", "rw"]),
    (r"\\server\share:/s", [r"\\server\share", "/s"]),
    ("/c/src:/src", ["/c/src", "/src"]),
])
def test_windows_volume_keeps_the_drive_colon(text: str, parts: list[str]) -> None:
    assert host_paths.split_volume(text, windows=True) == parts


def test_posix_volume_splits_at_every_colon() -> None:
    assert host_paths.split_volume("C:/src:/src:ro", windows=False) == ["C", "/src", "/src", "ro"]
    assert host_paths.split_volume("/src:/dst:ro", windows=False) == ["/src", "/dst", "ro"]


@pytest.mark.parametrize(("path", "windows", "absolute"), [
    (r"C:\Users\me", True, True), ("C:/Users/me", True, True), (r"\\server\share\x", True, True),
    (r"C:Users\me", True, False), ("src", True, False),
    ("/home/me", False, True), (r"C:\Users\me", False, False), ("src", False, False),
])
def test_absolute_by_the_host_rules(path: str, windows: bool, absolute: bool) -> None:
    assert host_paths.is_absolute(path, windows=windows) is absolute


@pytest.mark.parametrize(("path", "root", "inside"), [
    (r"C:\Users\me\src\app", r"C:\Users\me", "src/app"),
    (r"c:/users/ME/Src", r"C:\Users\me", "Src"),  # Windows paths compare case-insensitively, either slash
    (r"C:\Users\me", "C:\\Users\\me\\", ""),
    (r"C:\Users\meander", r"C:\Users\me", None),
    (r"D:\Users\me\x", r"C:\Users\me", None),
    (r"C:\x\y", "C:\\", "x/y"),
])
def test_windows_path_below_a_share(path: str, root: str, inside: str | None) -> None:
    assert host_paths.below(path, root, windows=True, resolve=ntpath.normpath) == inside


def test_posix_path_below_a_share() -> None:
    assert host_paths.below("/home/me/src", "/home/me", windows=False) == "src"
    assert host_paths.below("/home/meander", "/home/me", windows=False) is None
    assert host_paths.below("/tmp/a", "/", windows=False) == "tmp/a"


def test_shares_and_volumes_agree_on_real_paths(tmp_path: Path) -> None:
    """macOS: $TMPDIR and /tmp are links into /private; a share made from the link still holds
    a `-v` source given through it, and the other way round."""
    real = tmp_path / "private" / "tmp"
    (real / "data").mkdir(parents=True)
    link = tmp_path / "tmp"
    try:
        link.symlink_to(real, target_is_directory=True)
    except OSError as err:  # Windows without the symlink privilege
        pytest.skip(f"cannot create a symlink here: {err}")
    from backends.lightvm.settings import MachineSettings

    for share in (str(link), str(real)):
        settings = MachineSettings(name="m", arch="amd64", shares=[str(tmp_path / "home"), share])
        for source in (link / "data", real / "data"):
            volume = parse_volume(f"{source}:/data")
            assert volume.source == os.path.realpath(real / "data")
            assert settings.share_for(volume.source) == (1, "data")


def test_volume_of_this_host(tmp_path: Path) -> None:
    """A `-v` from the host's own temp directory (C:\\... on Windows): parsed, resolved, mode kept."""
    volume = parse_volume(f"{tmp_path}:/src:ro")
    assert (volume.source, volume.destination, volume.readonly) == (os.path.realpath(tmp_path), "/src", True)
    with pytest.raises(UsageError, match="mode must be ro or rw"):
        parse_volume(f"{tmp_path}:/src:rx")
    with pytest.raises(UsageError, match="must be absolute"):
        parse_volume("relative/dir:/src")


def test_windows_drive_volume_is_parsed_on_windows() -> None:
    """`-v C:\\...:/src` is a drive path on Windows (missing here: refused as missing, not as a mode)."""
    text = r"C:\hostrt-no-such-dir\src:/src"
    with pytest.raises(UsageError) as refused:
        parse_volume(text)
    if WINDOWS:
        assert "does not exist" in str(refused.value)
    else:
        assert "mode must be ro or rw" in str(refused.value)


def test_share_roots_are_absolute_by_the_host_rules() -> None:
    from pydantic import ValidationError

    from backends.lightvm.settings import MachineSettings

    absolute = [r"C:\Users\me", "C:/Users/me"] if WINDOWS else ["/home/me"]
    assert MachineSettings(name="m", arch="amd64", shares=absolute).shares == absolute
    with pytest.raises(ValidationError, match="must be an absolute path"):
        MachineSettings(name="m", arch="amd64", shares=["relative"])


def test_payload_names_are_posix_paths() -> None:
    """The guest unpacks the payload by its member names: POSIX on every host, so Windows
    (whose str(Path) has backslashes) ships the same tree and the same version hash."""
    import io
    import tarfile

    from backends.lightvm.payload import payload

    _, data = payload()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert "backends/linux_native/syscalls.py" in names and "hostrt-runtime" in names
    assert not [name for name in names if "\\" in name or name.startswith("/")]
