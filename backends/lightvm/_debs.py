"""Debian packages for the guest image: a private apt source, dependency closure, cached
download, unpacking.

The guest is the distribution its recipe names whatever the host runs (Debian 12 on a Debian 13
or Ubuntu host too), so apt runs with a configuration of its own (`PrivateApt`): its sources,
lists and cache under the build cache, both architectures, the Debian archive keyring. The host's
apt.conf still applies (proxies). Resolution asks `apt-cache depends` level by level; unpacking
uses `dpkg-deb -x`: no maintainer scripts run, so nothing needs emulating.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hostrt.errors import HostrtError
from hostrt.locks import file_lock

# As root, apt drops to the _apt user to download and warns when that user cannot write the cache.
_APT_AS_ROOT = ["-o", "APT::Sandbox::User=root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
_DEPENDS_FLAGS = [
    "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
    "--no-replaces", "--no-enhances",
]


DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
LISTS_MAX_AGE = 24 * 3600.0  # refreshed daily: superseded versions vanish from the mirrors
_ARCHITECTURES = ("amd64", "arm64")


class PackageError(HostrtError):
    """A package could not be resolved, downloaded or unpacked."""


@dataclass(frozen=True)
class PrivateApt:
    """apt pointed at its own sources, lists, cache and (empty) dpkg status under `root`."""

    root: Path
    options: list[str] = field(default_factory=list)

    @classmethod
    def at(cls, root: Path) -> "PrivateApt":
        opts = {
            "Dir::Etc::SourceList": root / "sources.list",
            "Dir::Etc::SourceParts": root / "empty.d",
            "Dir::Etc::Preferences": root / "preferences",
            "Dir::Etc::PreferencesParts": root / "empty.d",
            "Dir::State": root / "state",
            "Dir::State::status": root / "status",
            "Dir::Cache": root / "cache",
            "APT::Architecture": native_arch(),
            "Acquire::Languages": "none",
        }
        args = [a for key, value in opts.items() for a in ("-o", f"{key}={value}")]
        args += [a for arch in _ARCHITECTURES for a in ("-o", f"APT::Architectures::={arch}")]
        return cls(root, _APT_AS_ROOT + args)


def sources_list(source: dict[str, object], keyring: Path = DEBIAN_KEYRING) -> str:
    """The recipe's [source] table as sources.list lines (both architectures, signed by `keyring`)."""
    options = f"[arch={','.join(_ARCHITECTURES)} signed-by={keyring}]"
    components = " ".join(source.get("components", ["main"]))  # type: ignore[arg-type]
    mirror = os.environ.get("HOSTRT_GUEST_MIRROR") or str(source["mirror"])
    lines = [f"deb {options} {mirror} {suite} {components}" for suite in source["suites"]]  # type: ignore[union-attr]
    if source.get("security_suite"):
        security = os.environ.get("HOSTRT_GUEST_SECURITY_MIRROR") or str(source["security_mirror"])
        lines.append(f"deb {options} {security} {source['security_suite']} {components}")
    return "\n".join(lines) + "\n"


def private_apt(cache_dir: Path, source: dict[str, object]) -> PrivateApt:
    """The private apt for `source`, its lists fetched when missing, stale or for other sources."""
    if not DEBIAN_KEYRING.is_file():
        raise PackageError(f"{DEBIAN_KEYRING} not found: building the guest image needs the Debian archive "
                           "keyring (apt-get install debian-archive-keyring)")
    root = cache_dir / "apt"
    for sub in ("empty.d", "state/lists/partial", "cache/archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    apt = PrivateApt.at(root)
    wanted = sources_list(source)
    with file_lock(cache_dir / ".apt.lock"):
        (root / "status").touch()
        (root / "preferences").touch()
        stamp = root / "state" / "updated"
        current = (root / "sources.list").read_text() if (root / "sources.list").exists() else ""
        fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE
        if current != wanted or not fresh:
            (root / "sources.list").write_text(wanted)
            _run(["apt-get", *apt.options, "-q", "update"])
            stamp.write_text(wanted)
    return apt


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    path: Path


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise PackageError(f"{cmd[0]} not found: building the guest image needs Debian's apt and dpkg") from exc
    if proc.returncode != 0:
        words = [a for i, a in enumerate(cmd) if not a.startswith("-") and (i == 0 or cmd[i - 1] != "-o")]
        raise PackageError(f"{' '.join(words[:2])} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def native_arch() -> str:
    return _run(["dpkg", "--print-architecture"]).strip()


def _qualify(name: str, arch: str, native: str) -> str:
    return name if arch == native else f"{name}:{arch}"


def _bare(name: str) -> str:
    return name.strip("<>").split(":", 1)[0]


def _parse_depends(output: str) -> dict[str, list[list[str]]]:
    """`apt-cache depends` output -> package -> groups of alternatives (virtuals expanded)."""
    result: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    group: list[str] = []
    continues = False
    for line in output.splitlines():
        if not line.startswith(" "):
            current = result.setdefault(_bare(line), [])
            group, continues = [], False
            continue
        if current is None:
            continue
        m = re.match(r"^ (\|| )(PreDepends|Depends): (\S+)$", line)
        if m:
            if not continues:
                group = []
                current.append(group)
            group.append(m.group(3))
            continues = m.group(1) == "|"
        elif line.startswith("    ") and group and group[-1].startswith("<"):
            group.append(line.strip())  # a provider of the virtual package just listed
    return {
        pkg: [[_bare(a) for a in alts if not a.startswith("<")] for alts in groups]
        for pkg, groups in result.items()
    }


def closure(apt: PrivateApt, roots: list[str], exclude: set[str], arch: str) -> list[str]:
    """Package names needed by `roots` on `arch`: Depends/Pre-Depends, first usable alternative."""
    native = native_arch()
    chosen: set[str] = set()
    todo = [r for r in roots if r not in exclude]
    while todo:
        batch = sorted(set(todo) - chosen)
        todo = []
        if not batch:
            break
        chosen.update(batch)
        out = _run(["apt-cache", *apt.options, "depends", *_DEPENDS_FLAGS, *[_qualify(p, arch, native) for p in batch]])
        for pkg, groups in _parse_depends(out).items():
            for alts in groups:
                usable = [a for a in alts if a not in exclude]
                if not usable or any(a in chosen for a in usable):
                    continue
                todo.append(usable[0])
    missing = [r for r in roots if r not in exclude and r not in chosen]
    if missing:
        raise PackageError(f"unresolved packages: {missing}")
    return sorted(chosen)


def kernel_image_package(apt: PrivateApt, meta: str, arch: str) -> str:
    """The versioned kernel package a metapackage such as linux-image-amd64 points at today."""
    out = _run(["apt-cache", *apt.options, "depends", *_DEPENDS_FLAGS, _qualify(meta, arch, native_arch())])
    for alts in _parse_depends(out).get(meta, []):
        for name in alts:
            if name.startswith("linux-image-"):
                return name
    raise PackageError(f"{meta} does not depend on a linux-image-* package")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(apt: PrivateApt, packages: list[str], arch: str, dest: Path) -> list[Deb]:
    """The .debs for `packages` in `dest`, downloading only those not already there (checked by sha256)."""
    native = native_arch()
    dest.mkdir(parents=True, exist_ok=True)
    qualified = [_qualify(p, arch, native) for p in packages]
    with tempfile.TemporaryDirectory(dir=dest) as empty:  # apt omits files already in its cwd
        out = _run(["apt-get", *apt.options, "download", "--print-uris", *qualified], cwd=Path(empty))
    wanted: list[tuple[str, str, str]] = []  # (name, file name, sha256)
    for line in out.splitlines():
        m = re.match(r"^'[^']+' (\S+) \d+ SHA256:([0-9a-f]{64})$", line)
        if m:
            wanted.append((m.group(1).split("_", 1)[0], m.group(1), m.group(2)))
    if len(wanted) != len(packages):
        raise PackageError(f"apt-get download --print-uris listed {len(wanted)} of {len(packages)} packages")
    stale = [name for name, fname, sha in wanted if not (dest / fname).exists() or _sha256(dest / fname) != sha]
    if stale:
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            _run(["apt-get", *apt.options, "download", *[_qualify(p, arch, native) for p in stale]], cwd=Path(tmp))
            for f in Path(tmp).glob("*.deb"):
                os.replace(f, dest / f.name)
    debs = []
    for name, fname, sha in wanted:
        path = dest / fname  # an epoch's colon appears as %3a in both listing and file name
        if not path.exists() or _sha256(path) != sha:
            raise PackageError(f"download of {fname} failed or does not match its sha256")
        version = fname.split("_")[1].replace("%3a", ":")
        debs.append(Deb(name, version, path))
    return debs


def unpack(deb: Path, dest: Path) -> None:
    """`dpkg-deb -x`: the package's files, no maintainer scripts."""
    dest.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)])


# Debian 12 packages still ship some files under /bin, /sbin, /lib*; the guest is merged-/usr.
_USR_MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def merge_usr(src: Path, root: Path) -> None:
    """Move an unpacked package tree into `root`, mapping /bin, /lib... into /usr."""
    for top in sorted(src.iterdir()):
        target_top = root / "usr" / top.name if top.name in _USR_MERGED else root / top.name
        if top.is_symlink() or not top.is_dir():
            _move(top, target_top)
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            rel = Path(dirpath).relative_to(top)
            (target_top / rel).mkdir(parents=True, exist_ok=True)
            for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
                _move(Path(dirpath) / name, target_top / rel / name)
            dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    os.replace(src, dst)
