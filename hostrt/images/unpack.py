"""Unpack one layer tar into its own directory, refusing anything that would escape it.

The layer directory becomes an overlayfs lower dir, so OCI whiteouts are written in
overlay's form: `.wh.NAME` becomes a 0:0 character device NAME and `.wh..wh..opq` the
`trusted.overlay.opaque=y` xattr on its directory. Without root (no mknod, no trusted.*)
the OCI marker files are kept as empty files instead, so nothing is lost. In rootless mode
(root of the user's own user namespace) whiteouts are 0:0 devices too, opaque directories
carry `user.overlay.opaque=y` (read by overlayfs's `userxattr` and by fuse-overlayfs), and
an owner outside the namespace's id range (a user with the single-id map) is left as is.

Every entry is checked before it touches the disk: no absolute paths, no `..`, no
parent that is a symlink or not a directory, hard links only to earlier entries of the
same layer, no duplicates (a directory may repeat), names within NAME_MAX/PATH_MAX, no
overlay xattrs smuggled in, device nodes only when privileged. Files are created with
O_EXCL|O_NOFOLLOW so nothing existing is ever opened. The whole layer is rejected with
an `UnsafeLayerError` naming the entry; the caller discards the half-made directory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from hostrt.images.errors import DigestMismatchError, UnpackError, UnsafeLayerError

_ROOTLESS_VARIABLE = "HOSTRT_ROOTLESS_UID"  # hostrt/rootless: set in the user's namespace
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_NAME_MAX = 255
_PATH_MAX = 4095
_COPY_CHUNK = 1 << 20
_FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass
class UnpackResult:
    """What unpacking produced: the uncompressed digest (diff id), content size, and what was left out."""

    diff_id: str
    size: int
    skipped: list[str] = field(default_factory=list)


class _HashingReader:
    """Hashes the uncompressed tar stream as tarfile reads it: that hash is the layer's diff id."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(_COPY_CHUNK):
            pass


def _decompressed(blob: BinaryIO, compression: str) -> BinaryIO:
    if compression == "none":
        return blob
    if compression == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=blob, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise UnpackError("layer is tar+zstd but the zstandard module is not installed (pip install zstandard)") from None
        return zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True)  # type: ignore[return-value]
    raise UnpackError(f"unsupported layer compression {compression!r}")


def default_privileged() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


class _Extractor:
    def __init__(self, dest: Path, privileged: bool) -> None:
        self.dest = str(dest)
        self.privileged = privileged
        self.known_dirs: set[str] = {""}  # real directories we made or checked, relative to dest
        self.entries: dict[str, str] = {}  # rel path -> kind ("dir", "file", "whiteout")
        self.dir_meta: list[tuple[str, tarfile.TarInfo]] = []
        self.skipped: list[str] = []
        self.size = 0

    # -- names ---------------------------------------------------------------------------
    def clean(self, name: str, entry: str | None = None) -> str:
        """The entry's path relative to the layer root; `entry` is set when `name` is a link target."""
        what = f"layer entry {name[:80]!r}" if entry is None else f"layer entry {entry[:80]!r}: hard link target {name[:80]!r}"
        if name.startswith("/"):
            raise UnsafeLayerError(f"{what}: absolute path")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise UnsafeLayerError(f"{what}: '..' would leave the layer directory")
        for p in parts:
            if len(os.fsencode(p)) > _NAME_MAX:
                raise UnsafeLayerError(f"{what}: a name component is longer than {_NAME_MAX} bytes")
        rel = "/".join(parts)
        if len(os.fsencode(rel)) + len(self.dest) + 1 > _PATH_MAX:
            raise UnsafeLayerError(f"{what}: path longer than {_PATH_MAX} bytes")
        return rel

    def full(self, rel: str) -> str:
        return self.dest + "/" + rel if rel else self.dest

    def ensure_parent(self, rel: str, entry: str, create: bool = True) -> None:
        """Make sure every directory above `rel` is a real directory inside the layer (never a symlink)."""
        parent = rel.rpartition("/")[0]
        if parent in self.known_dirs:
            return
        built = ""
        for part in parent.split("/"):
            built = f"{built}/{part}" if built else part
            if built in self.known_dirs:
                continue
            path = self.full(built)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    raise UnsafeLayerError(f"layer entry {entry!r}: {built!r} does not exist") from None
                os.mkdir(path, 0o755)  # implied by the entry, as tar does
                self.known_dirs.add(built)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeLayerError(f"layer entry {entry!r}: goes through the symlink {built!r}")
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeLayerError(f"layer entry {entry!r}: {built!r} is not a directory")
            self.known_dirs.add(built)

    def claim(self, rel: str, kind: str, entry: str) -> None:
        """Record an entry's path; a second entry for the same path is refused (directories may repeat)."""
        previous = self.entries.get(rel)
        if previous is not None and not (previous == "dir" and kind == "dir"):
            raise UnsafeLayerError(f"layer entry {entry!r}: duplicate entry for {rel!r}")
        if previous is None and rel in self.known_dirs and kind != "dir":
            raise UnsafeLayerError(f"layer entry {entry!r}: {rel!r} is already a directory of earlier entries")
        self.entries[rel] = kind

    # -- entries -------------------------------------------------------------------------
    def extract(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        rel = self.clean(m.name)
        base = rel.rpartition("/")[2]
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(rel, base, m.name)
            return
        if rel == "":
            if m.isdir():
                self.dir_meta.append(("", m))
                return
            raise UnsafeLayerError(f"layer entry {m.name!r}: the layer root must be a directory")
        self.ensure_parent(rel, m.name)
        path = self.full(rel)
        if m.isdir():
            self.claim(rel, "dir", m.name)
            if rel not in self.known_dirs:
                os.mkdir(path, 0o700)
                self.known_dirs.add(rel)
            self.dir_meta.append((rel, m))
            return
        self.claim(rel, "file", m.name)
        if m.isreg():
            fd = os.open(path, _OPEN_FLAGS, 0o600)
            with os.fdopen(fd, "wb") as out:
                src = tf.extractfile(m)
                assert src is not None
                remaining = m.size
                while remaining:
                    chunk = src.read(min(_COPY_CHUNK, remaining))
                    if not chunk:
                        raise UnsafeLayerError(f"layer entry {m.name!r}: truncated file data")
                    out.write(chunk)
                    remaining -= len(chunk)
            self.size += m.size
        elif m.issym():
            if "\0" in m.linkname or len(os.fsencode(m.linkname)) > _PATH_MAX:
                raise UnsafeLayerError(f"layer entry {m.name!r}: invalid symlink target")
            os.symlink(m.linkname, path)
        elif m.islnk():
            self.hardlink(rel, m)
            return  # a hard link shares its target's inode: its own metadata would rewrite the target
        elif m.ischr() or m.isblk():
            if not self.privileged:
                self.entries.pop(rel)
                self.skipped.append(f"{rel}: device node (needs root)")
                return
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise UnsafeLayerError(f"layer entry {m.name!r}: unsupported tar entry type {m.type!r}")
        self.apply_meta(path, m)

    def hardlink(self, rel: str, m: tarfile.TarInfo) -> None:
        target = self.clean(m.linkname, m.name)
        if self.entries.get(target) != "file" or target == rel:
            raise UnsafeLayerError(
                f"layer entry {m.name!r}: hard link to {m.linkname!r}, which is not an earlier file of this layer"
            )
        self.ensure_parent(target, m.name, create=False)
        if stat.S_ISDIR(os.lstat(self.full(target)).st_mode):
            raise UnsafeLayerError(f"layer entry {m.name!r}: hard link to a directory")
        os.link(self.full(target), self.full(rel), follow_symlinks=False)

    def whiteout(self, rel: str, base: str, entry: str) -> None:
        parent = rel.rpartition("/")[0]
        if parent:
            self.ensure_parent(rel, entry)
            if parent not in self.known_dirs:
                self.known_dirs.add(parent)
        if base == OPAQUE_MARKER:
            self.make_opaque(parent, entry)
            return
        if base.startswith(".wh..wh."):
            self.skipped.append(f"{rel}: aufs metadata")
            return
        target = base[len(WHITEOUT_PREFIX) :]
        if target in ("", ".", ".."):
            raise UnsafeLayerError(f"layer entry {entry!r}: whiteout of {target!r} is meaningless")
        target_rel = f"{parent}/{target}" if parent else target
        self.claim(target_rel, "whiteout", entry)
        if self.privileged:
            try:
                os.mknod(self.full(target_rel), stat.S_IFCHR | 0o000, os.makedev(0, 0))
                return
            except PermissionError:
                pass
        fd = os.open(self.full(rel), _OPEN_FLAGS, 0o600)  # keep the OCI marker itself
        os.close(fd)

    def make_opaque(self, parent: str, entry: str) -> None:
        if self.privileged and hasattr(os, "setxattr"):
            name = "user.overlay.opaque" if _ROOTLESS_VARIABLE in os.environ else "trusted.overlay.opaque"
            try:
                os.setxattr(self.full(parent), name, b"y")
                return
            except OSError:
                pass
        rel = f"{parent}/{OPAQUE_MARKER}" if parent else OPAQUE_MARKER
        self.claim(rel, "file", entry)
        os.close(os.open(self.full(rel), _OPEN_FLAGS, 0o600))

    def apply_meta(self, path: str, m: tarfile.TarInfo) -> None:
        is_link = m.issym()
        if self.privileged and hasattr(os, "lchown"):
            try:
                os.chown(path, m.uid, m.gid, follow_symlinks=False)
            except OSError as err:
                if err.errno != errno.EINVAL or _ROOTLESS_VARIABLE not in os.environ:
                    raise
                self.skipped.append(f"{m.name}: owner {m.uid}:{m.gid} is outside this user's id range")
        if not is_link:
            os.chmod(path, m.mode & 0o7777)  # after chown, which clears setuid/setgid
        self.apply_xattrs(path, m)
        try:
            os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)
        except (NotImplementedError, OSError):
            pass

    def apply_xattrs(self, path: str, m: tarfile.TarInfo) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr.") :]
            if name.startswith(_FORBIDDEN_XATTR_PREFIXES):
                raise UnsafeLayerError(f"layer entry {m.name!r}: overlay xattr {name!r} is not allowed in a layer")
            raw = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(path, name, raw, follow_symlinks=False)
            except (OSError, AttributeError) as err:
                self.skipped.append(f"{m.name}: xattr {name} ({getattr(err, 'strerror', err)})")

    def finish(self) -> None:
        """Directory metadata last, deepest first: writing into a directory changes its mtime."""
        for rel, m in sorted(self.dir_meta, key=lambda item: item[0].count("/"), reverse=True):
            self.apply_meta(self.full(rel), m)


def unpack_layer(
    blob: BinaryIO,
    compression: str,
    dest: Path,
    *,
    expected_diff_id: str | None = None,
    privileged: bool | None = None,
) -> UnpackResult:
    """Extract a layer stream into the empty directory `dest`; verify its diff id if given.

    On any error `dest` is left half-filled: the caller owns it and removes it.
    """
    privileged = default_privileged() if privileged is None else privileged
    reader = _HashingReader(_decompressed(blob, compression))
    ex = _Extractor(Path(dest), privileged)
    member = None
    try:
        with tarfile.open(fileobj=reader, mode="r|", errorlevel=2) as tf:  # type: ignore[call-overload]
            members = iter(tf)
            while True:
                try:
                    member = next(members)
                except StopIteration:
                    break
                except tarfile.ReadError as err:
                    # umoci (and others) end a layer right after the last file's data, without
                    # padding or end blocks; that file was read whole, so the archive is complete.
                    if str(err) == "unexpected end of data" and ex.entries:
                        break
                    raise
                ex.extract(tf, member)
            member = None
        reader.drain()
    except tarfile.TarError as err:
        if member is not None:
            raise UnpackError(f"layer entry {member.name!r}: truncated or corrupt tar data ({err})") from None
        raise UnsafeLayerError(f"layer is not a valid tar archive: {err}") from None
    except (EOFError, zlib.error) as err:
        raise UnpackError(f"layer stream is corrupt: {err}") from None
    except OSError as err:
        where = f"layer entry {member.name!r}" if member is not None else "layer"
        raise UnpackError(f"{where}: {err.strerror or err}") from None
    ex.finish()
    diff_id = "sha256:" + reader.hash.hexdigest()
    if expected_diff_id is not None and diff_id != expected_diff_id:
        raise DigestMismatchError(f"layer content has diff id {diff_id}, the image config says {expected_diff_id}")
    return UnpackResult(diff_id=diff_id, size=ex.size, skipped=ex.skipped)
