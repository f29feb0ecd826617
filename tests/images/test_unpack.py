"""Unpacking: normal layers keep their metadata; every hostile entry is refused by name."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tempfile
from pathlib import Path

import pytest

from hostrt.images.digest import of_bytes
from hostrt.images.errors import DigestMismatchError, UnpackError, UnsafeLayerError
from hostrt.images.unpack import unpack_layer

from .conftest import tar_bytes


def unpack(tmp_path: Path, entries: list[dict], **kw: object) -> tuple[Path, object]:
    dest = Path(tempfile.mkdtemp(prefix="layer-", dir=tmp_path))
    result = unpack_layer(io.BytesIO(tar_bytes(entries)), "none", dest, **kw)  # type: ignore[arg-type]
    return dest, result


def refused(tmp_path: Path, entries: list[dict], match: str, **kw: object) -> Path:
    """Assert the layer is refused with a message naming the entry; return the outside dir to check."""
    with pytest.raises(UnsafeLayerError, match=match):
        unpack(tmp_path, entries, **kw)
    return tmp_path


def test_regular_layer_keeps_modes_owners_mtimes_links(tmp_path: Path) -> None:
    data = b"#!/bin/sh\necho hi\n"
    dest, result = unpack(
        tmp_path,
        [
            {"name": "./", "type": "dir", "mode": 0o755},
            {"name": "bin", "type": "dir", "mode": 0o755, "mtime": 1_500_000_000},
            {"name": "bin/tool", "data": data, "mode": 0o4755, "uid": 1000, "gid": 1001},
            {"name": "bin/sh", "type": "symlink", "linkname": "/bin/tool"},
            {"name": "bin/again", "type": "hardlink", "linkname": "bin/tool"},
            {"name": "etc/deep/file", "data": b"x"},  # parents implied, as tar does
            {"name": "run/fifo", "type": "fifo"},
            {"name": "tmp", "type": "dir", "mode": 0o1777},
            {"name": "bin", "type": "dir", "mode": 0o711},  # a repeated directory updates it
        ],
    )
    tool = dest / "bin" / "tool"
    st = tool.lstat()
    assert tool.read_bytes() == data
    assert stat.S_IMODE(st.st_mode) == 0o4755  # setuid survives the chown
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1000, 1001)
    assert st.st_mtime == 1_600_000_000
    assert os.readlink(dest / "bin" / "sh") == "/bin/tool"
    assert (dest / "bin" / "again").stat().st_ino == st.st_ino
    assert (dest / "etc" / "deep" / "file").read_bytes() == b"x"
    assert stat.S_ISFIFO((dest / "run" / "fifo").lstat().st_mode)
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((dest / "bin").stat().st_mode) == 0o711
    assert (dest / "bin").stat().st_mtime == 1_600_000_000
    assert result.size == len(data) + 1


def test_diff_id_is_the_uncompressed_digest_and_is_checked(tmp_path: Path) -> None:
    raw = tar_bytes([{"name": "a", "data": b"a"}])
    dest = tmp_path / "l1"
    dest.mkdir()
    result = unpack_layer(io.BytesIO(gzip.compress(raw)), "gzip", dest, expected_diff_id=of_bytes(raw))
    assert result.diff_id == of_bytes(raw)
    dest2 = tmp_path / "l2"
    dest2.mkdir()
    with pytest.raises(DigestMismatchError, match="diff id"):
        unpack_layer(io.BytesIO(raw), "none", dest2, expected_diff_id="sha256:" + "0" * 64)


def test_zstd_layer(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard", reason="zstandard is an optional dependency")
    raw = tar_bytes([{"name": "z", "data": b"zz"}])
    dest = tmp_path / "l"
    dest.mkdir()
    unpack_layer(io.BytesIO(zstandard.ZstdCompressor().compress(raw)), "zstd", dest)
    assert (dest / "z").read_bytes() == b"zz"


def test_corrupt_gzip_is_an_error(tmp_path: Path) -> None:
    blob = bytearray(gzip.compress(tar_bytes([{"name": "a", "data": os.urandom(4096)}])))
    blob[len(blob) // 2] ^= 0xFF
    dest = tmp_path / "l"
    dest.mkdir()
    with pytest.raises(UnpackError):
        unpack_layer(io.BytesIO(bytes(blob)), "gzip", dest)


def test_absolute_path_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "outside"
    refused(tmp_path, [{"name": str(target), "data": b"pwned"}], "'/.*outside'.*absolute path")
    assert not target.exists()


def test_dotdot_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, [{"name": "a/../../outside", "data": b"pwned"}], r"'a/\.\./\.\./outside'.*'\.\.'")
    assert not (tmp_path / "outside").exists()


def test_write_through_symlink_to_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "victim"
    outside.mkdir()
    refused(
        tmp_path,
        [
            {"name": "escape", "type": "symlink", "linkname": str(outside)},
            {"name": "escape/owned", "data": b"pwned"},
        ],
        "'escape/owned'.*symlink 'escape'",
    )
    assert list(outside.iterdir()) == []


def test_write_through_relative_symlink_is_refused(tmp_path: Path) -> None:
    refused(
        tmp_path,
        [
            {"name": "d", "type": "dir"},
            {"name": "d/up", "type": "symlink", "linkname": "../.."},
            {"name": "d/up/owned", "data": b"pwned"},
        ],
        "'d/up/owned'.*symlink 'd/up'",
    )
    assert not (tmp_path / "owned").exists()


def test_symlink_replaced_by_file_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "victim.txt"
    outside.write_text("safe")
    refused(
        tmp_path,
        [
            {"name": "link", "type": "symlink", "linkname": str(outside)},
            {"name": "link", "data": b"pwned"},
        ],
        "'link'.*duplicate",
    )
    assert outside.read_text() == "safe"


def test_hardlink_to_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_text("secret")
    refused(tmp_path, [{"name": "h", "type": "hardlink", "linkname": str(outside)}], "'h': hard link target .*absolute path")
    refused(tmp_path, [{"name": "h", "type": "hardlink", "linkname": "../secret"}], r"'\.\./secret'")
    assert outside.stat().st_nlink == 1


def test_hardlink_through_symlink_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    refused(
        tmp_path,
        [
            {"name": "s", "type": "symlink", "linkname": str(outside)},
            {"name": "h", "type": "hardlink", "linkname": "s/secret"},
        ],
        "'h'.*hard link to 's/secret'",
    )
    assert (outside / "secret").stat().st_nlink == 1


def test_hardlink_to_a_symlink_links_the_symlink_not_its_target(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_text("secret")
    dest, _ = unpack(
        tmp_path,
        [{"name": "s", "type": "symlink", "linkname": str(outside)}, {"name": "h", "type": "hardlink", "linkname": "s"}],
    )
    assert (dest / "h").is_symlink() and (dest / "h").lstat().st_ino == (dest / "s").lstat().st_ino
    assert outside.stat().st_nlink == 1


def test_hardlink_to_a_later_or_missing_entry_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, [{"name": "h", "type": "hardlink", "linkname": "later"}, {"name": "later"}], "'h'.*not an earlier file")


def test_whiteout_escaping_is_refused(tmp_path: Path) -> None:
    (tmp_path / "precious").write_text("keep")
    refused(tmp_path, [{"name": "../.wh.precious", "data": b""}], r"'\.\./\.wh\.precious'.*'\.\.'")
    refused(tmp_path, [{"name": "a/.wh...", "data": b""}], "whiteout of '..'")
    assert (tmp_path / "precious").read_text() == "keep"


def test_whiteout_through_symlink_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    refused(
        tmp_path,
        [
            {"name": "s", "type": "symlink", "linkname": str(outside)},
            {"name": "s/.wh.precious", "data": b""},
        ],
        "'s/.wh.precious'.*symlink 's'",
    )
    assert (outside / "precious").read_text() == "keep"


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    dest, _ = unpack(
        tmp_path,
        [{"name": "etc/.wh.gone", "data": b""}, {"name": "var/.wh..wh..opq", "data": b""}],
        privileged=True,
    )
    st = (dest / "etc" / "gone").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(dest / "var", "trusted.overlay.opaque") == b"y"


def test_whiteouts_without_root_keep_the_oci_markers(tmp_path: Path) -> None:
    dest, _ = unpack(
        tmp_path,
        [{"name": "etc/.wh.gone", "data": b""}, {"name": "var/.wh..wh..opq", "data": b""}],
        privileged=False,
    )
    assert (dest / "etc" / ".wh.gone").is_file() and not (dest / "etc" / "gone").exists()
    assert (dest / "var" / ".wh..wh..opq").is_file()


def test_device_nodes_skipped_without_privilege(tmp_path: Path) -> None:
    dest, result = unpack(
        tmp_path, [{"name": "dev/sda", "type": "blk", "devmajor": 8, "devminor": 0}], privileged=False
    )
    assert not (dest / "dev" / "sda").exists()
    assert any("dev/sda" in s and "device" in s for s in result.skipped)  # type: ignore[attr-defined]


@pytest.mark.skipif(os.geteuid() != 0, reason="creating device nodes needs root")
def test_device_nodes_created_with_privilege(tmp_path: Path) -> None:
    dest, _ = unpack(tmp_path, [{"name": "dev/null", "type": "chr", "devmajor": 1, "devminor": 3}], privileged=True)
    st = (dest / "dev" / "null").lstat()
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def test_over_long_names_are_refused(tmp_path: Path) -> None:
    refused(tmp_path, [{"name": "a" * 300, "data": b""}], "longer than 255 bytes")
    refused(tmp_path, [{"name": "/".join(["d" * 200] * 25), "data": b""}], "path longer than")


def test_duplicate_file_entries_are_refused(tmp_path: Path) -> None:
    refused(tmp_path, [{"name": "f", "data": b"1"}, {"name": "f", "data": b"2"}], "'f'.*duplicate")


def test_file_then_directory_of_same_name_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, [{"name": "x", "data": b"1"}, {"name": "x", "type": "dir"}], "'x'.*duplicate")


def test_file_through_a_file_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, [{"name": "x", "data": b"1"}, {"name": "x/y", "data": b"2"}], "'x/y'.*'x' is not a directory")


def test_overlay_xattrs_are_refused(tmp_path: Path) -> None:
    refused(
        tmp_path,
        [{"name": "d", "type": "dir", "pax": {"SCHILY.xattr.trusted.overlay.redirect": "/etc"}}],
        "'d'.*overlay xattr",
    )


def test_user_xattrs_are_kept(tmp_path: Path) -> None:
    dest, result = unpack(tmp_path, [{"name": "f", "data": b"x", "pax": {"SCHILY.xattr.user.note": "hi"}}])
    try:
        assert os.getxattr(dest / "f", "user.note") == b"hi"
    except OSError:  # a filesystem without user xattrs: it must then be reported, not silently lost
        assert any("user.note" in s for s in result.skipped)  # type: ignore[attr-defined]


def test_garbage_is_not_a_tar(tmp_path: Path) -> None:
    dest = tmp_path / "l"
    dest.mkdir()
    with pytest.raises(UnpackError, match="not a valid tar"):
        unpack_layer(io.BytesIO(b"this is not a tar archive" * 100), "none", dest)


def test_tar_without_end_blocks_is_accepted_but_truncated_data_is_not(tmp_path: Path) -> None:
    raw = tar_bytes([{"name": "a", "data": b"abc"}])
    dest = Path(tempfile.mkdtemp(dir=tmp_path))
    unpack_layer(io.BytesIO(raw[: 512 + 3]), "none", dest)  # as umoci writes it: no padding, no end blocks
    assert (dest / "a").read_bytes() == b"abc"
    dest = Path(tempfile.mkdtemp(dir=tmp_path))
    with pytest.raises(UnpackError, match="'a'"):
        unpack_layer(io.BytesIO(raw[: 512 + 2]), "none", dest)
