"""Image recipes: a directory with `recipe.toml` that builds a multi-platform image from Debian packages.

For each platform the recipe's packages are fetched with `apt-get download` (any
architecture dpkg knows about: `dpkg --add-architecture arm64`), unpacked with
`dpkg-deb -x`, and the chosen files become one reproducible layer; nothing is executed, so
building an arm64 image needs no emulator. See images/README.md for the format.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hostrt.errors import first_validation_error
from hostrt.images import oci
from hostrt.images import reference as references
from hostrt.images.assemble import store_index, store_manifest
from hostrt.images.errors import RecipeError
from hostrt.images.layer_tar import TarEntry, write_layer
from hostrt.images.store import ContentStore
from hostrt.platform import ImagePlatform

_DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_APPLET = re.compile(r"^[a-z0-9_.\[\]-]{1,32}$")
# Debian architecture names for OCI ones.
_DEB_ARCH = {"amd64": "amd64", "arm64": "arm64", "arm/v7": "armhf", "arm/v5": "armel", "386": "i386",
             "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecipePlatform(_Strict):
    platform: str
    packages: list[str]


class RecipeRootfs(_Strict):
    include: list[str] = Field(min_length=1, description="paths copied from the unpacked packages")
    busybox_applets: str | None = Field(default=None, description="make /bin/<applet> symlinks for this busybox")
    overlay: str | None = Field(default=None, description="a directory of the recipe copied over the rootfs")
    dirs: dict[str, str] = {}


class Recipe(_Strict):
    name: str
    platforms: list[RecipePlatform] = Field(min_length=1)
    rootfs: RecipeRootfs
    config: dict = {}


def load(recipe_dir: Path) -> Recipe:
    path = Path(recipe_dir) / "recipe.toml"
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{recipe_dir} is not a recipe: it has no recipe.toml") from None
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: {err}") from None
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        raise RecipeError(f"{path}: {first_validation_error(err)}") from None
    references.parse(recipe.name)
    return recipe


def busybox_applets(binary: bytes) -> list[str]:
    """The applet names compiled into a busybox binary, read from its sorted name table.

    Reading the table instead of running `busybox --list` lets an amd64 host build the arm64 image.
    The table starts "[", "[[" (NUL-separated); what precedes it differs between releases.
    """
    start = binary.find(b"[\0[[\0")
    if start < 0:
        raise RecipeError("no applet table found in the busybox binary")
    while start >= 0:
        names = _applet_table(binary, start)
        if names:
            return names
        start = binary.find(b"[\0[[\0", start + 1)
    raise RecipeError("the busybox applet table is not what this recipe understands")


def _applet_table(binary: bytes, pos: int) -> list[str] | None:
    """The NUL-separated names from `pos` to the empty one, if they look like an applet table."""
    names: list[str] = []
    while True:
        end = binary.find(b"\0", pos)
        if end <= pos:
            break
        names.append(binary[pos:end].decode("ascii", "replace"))
        pos = end + 1
    if len(names) < 10 or names != sorted(names) or not all(_APPLET.match(n) for n in names):
        return None
    return names


def _deb_arch(platform: ImagePlatform) -> str:
    key = platform.architecture + (f"/{platform.variant}" if platform.variant and platform.architecture == "arm" else "")
    try:
        return _DEB_ARCH[key]
    except KeyError:
        raise RecipeError(f"no Debian architecture for {platform}") from None


def fetch_deb(package: str, arch: str, cache: Path) -> Path:
    """`apt-get download` a package into the cache (reusing a cached .deb when apt cannot reach its mirror)."""
    cache.mkdir(parents=True, exist_ok=True)
    name = package.split(":", 1)[0]
    if shutil.which("apt-get") is None:
        raise RecipeError("building this recipe needs apt-get (a Debian or Ubuntu host)")
    proc = subprocess.run(
        ["apt-get", "download", f"{name}:{arch}"], cwd=cache, capture_output=True, text=True, check=False
    )
    found = sorted(cache.glob(f"{name}_*_{arch}.deb"), key=lambda p: p.stat().st_mtime)
    if not found:
        hint = f" (run: dpkg --add-architecture {arch} && apt-get update)" if "Unable to locate" in proc.stderr else ""
        detail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise RecipeError(f"cannot download {name}:{arch}: {detail}{hint}")
    return found[-1]


def _unpack_deb(deb: Path, dest: Path) -> None:
    if shutil.which("dpkg-deb") is None:
        raise RecipeError("building this recipe needs dpkg-deb")
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RecipeError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()}")


_MOVED_TO_USR = ("bin/", "sbin/", "lib/")


def _packaged(unpacked: Path, rel: str) -> Path:
    """Where the packages put `rel`: distributions with a merged /usr (Debian 13) ship bin/x as usr/bin/x."""
    src = unpacked / rel
    if not src.is_file() and rel.startswith(_MOVED_TO_USR) and (unpacked / "usr" / rel).is_file():
        return unpacked / "usr" / rel
    return src


def _entries(recipe: Recipe, recipe_dir: Path, unpacked: Path) -> list[TarEntry]:
    entries: dict[str, TarEntry] = {}

    def add_parents(path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            entries.setdefault(d, TarEntry(d, "dir", 0o755))

    for rel in recipe.rootfs.include:
        rel = rel.strip("/")
        src = _packaged(unpacked, rel)
        if not src.is_file():
            raise RecipeError(f"recipe includes {rel!r}, which the packages do not contain")
        add_parents(rel)
        entries[rel] = TarEntry(rel, "file", src.stat().st_mode & 0o7777, source=src)
    if recipe.rootfs.busybox_applets:
        target = recipe.rootfs.busybox_applets.strip("/")
        where, binary = target.rpartition("/")[0], target.rpartition("/")[2]
        for applet in busybox_applets(_packaged(unpacked, target).read_bytes()):
            if applet == binary:
                continue
            path = f"{where}/{applet}" if where else applet
            entries.setdefault(path, TarEntry(path, "symlink", 0o777, linkname=binary))
    for d, mode in recipe.rootfs.dirs.items():
        d = d.strip("/")
        add_parents(d)
        entries[d] = TarEntry(d, "dir", int(mode, 8))
    if recipe.rootfs.overlay:
        base = recipe_dir / recipe.rootfs.overlay
        for src in sorted(base.rglob("*")):
            rel = src.relative_to(base).as_posix()
            add_parents(rel)
            if src.is_symlink():
                entries[rel] = TarEntry(rel, "symlink", 0o777, linkname=os.readlink(src))
            elif src.is_dir():
                entries.setdefault(rel, TarEntry(rel, "dir", 0o755))
            else:
                mode = 0o755 if os.access(src, os.X_OK) else 0o644
                entries[rel] = TarEntry(rel, "file", mode, source=src)
    return list(entries.values())


def build(
    recipe_dir: Path, store: ContentStore, cache: Path, log: Callable[[str], None] = lambda _: None
) -> tuple[str, oci.Descriptor]:
    """Build every platform of a recipe into `store` and name the index; returns (name, index descriptor)."""
    recipe_dir = Path(recipe_dir)
    recipe = load(recipe_dir)
    name = references.parse(recipe.name).familiar()
    manifests: list[oci.Descriptor] = []
    with store.content_lock(), tempfile.TemporaryDirectory(prefix="hostrt-build-") as tmp:
        for i, plat in enumerate(recipe.platforms):
            platform = oci.platform_of(*_split_platform(plat.platform))
            arch = _deb_arch(platform)
            unpacked = Path(tmp) / f"rootfs-{i}"
            versions = []
            for package in plat.packages:
                deb = fetch_deb(package, arch, cache)
                log(f"{platform}: {deb.name}")
                versions.append(deb.name.removesuffix(".deb"))
                _unpack_deb(deb, unpacked)
            entries = _entries(recipe, recipe_dir, unpacked)
            epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or max(
                int(e.source.stat().st_mtime) for e in entries if e.source is not None and e.source.is_relative_to(unpacked)
            ))
            layer, layer_size, diff_id = write_layer(store, entries, epoch, Path(tmp) / f"scratch-{i}")
            created = _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            run_config = {"Env": [_DEFAULT_PATH], **recipe.config}
            config = oci.ImageConfig(
                architecture=platform.architecture,
                os=platform.os,
                variant="v8" if platform.architecture == "arm64" else platform.variant,
                created=created,
                config=run_config,
                rootfs=oci.RootFS(type="layers", diff_ids=[diff_id]),
                history=[{"created": created, "created_by": f"hostrt image build {recipe_dir.name} ({', '.join(versions)})"}],
            )
            manifests.append(store_manifest(store, config, [(layer, layer_size)]))
        index = store_index(store, name, manifests)
    return name, index



def _split_platform(text: str) -> tuple[str, str, str | None]:
    parts = text.split("/")
    if len(parts) not in (2, 3):
        raise RecipeError(f"invalid platform {text!r} in recipe: expected os/arch[/variant]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None
