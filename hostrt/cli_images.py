"""Image commands of the `hostrt` CLI: pull, push, images, rmi, tag, inspect, login, image build/prune.

Only parses options and prints; the work is in `hostrt.images`. Nothing heavy is imported
at module level: requests and rich load only inside the commands that use them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from hostrt.images.local import LocalImages

image_app = typer.Typer(rich_markup_mode=None, help="Manage images (build from a recipe, prune).", no_args_is_help=True)

PlatformOpt = Annotated[
    Optional[str], typer.Option("--platform", help="os/arch[/variant], e.g. linux/arm64 (default: this host's).")
]
InsecureOpt = Annotated[
    Optional[list[str]],
    typer.Option("--insecure-registry", help="Registry host:port to reach over plain HTTP (loopback always is)."),
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="text or json.")]


def _images() -> "LocalImages":
    from hostrt.images.local import LocalImages

    return LocalImages.open()


def _platform(text: str | None):  # noqa: ANN202
    from hostrt.platform import ImagePlatform

    return ImagePlatform.parse(text) if text else None


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{size}B"


class _RichProgress:
    """Progress bars on stderr (used only when stderr is a terminal)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self._bars = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "_RichProgress":
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def start(self, key: str, description: str, total: int | None) -> None:
        if key not in self._tasks:
            self._tasks[key] = self._bars.add_task(description, total=total)

    def advance(self, key: str, amount: int) -> None:
        if key in self._tasks:
            self._bars.advance(self._tasks[key], amount)  # type: ignore[arg-type]

    def finish(self, key: str, note: str) -> None:
        if key in self._tasks:
            self._bars.update(self._tasks[key], description=f"{self._bars.tasks[self._tasks[key]].description} {note}")  # type: ignore[index]


def _progress(quiet: bool):  # noqa: ANN202
    from contextlib import nullcontext

    from hostrt.images.progress import Silent

    if quiet or not sys.stderr.isatty():
        return nullcontext(Silent())
    return _RichProgress()


def pull(
    reference: Annotated[str, typer.Argument(help="Image reference, e.g. busybox or 127.0.0.1:5000/busybox:latest.")],
    platform: PlatformOpt = None,
    insecure_registry: InsecureOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Pull an image (one platform of a multi-platform image) from a registry."""
    from hostrt.images.pull import pull as do_pull

    images = _images()
    with _progress(quiet) as progress:
        result = do_pull(images, reference, _platform(platform), insecure=insecure_registry or (), progress=progress)
    typer.echo(f"{result.name}: {result.platform} {result.manifest_digest} (digest {result.digest}, {result.fetched} blobs fetched)")


def push(
    image: Annotated[str, typer.Argument(help="Local image to push.")],
    destination: Annotated[Optional[str], typer.Argument(help="Where to push it (default: the image's own name).")] = None,
    insecure_registry: InsecureOpt = None,
    chunk_size: Annotated[Optional[int], typer.Option("--chunk-size", help="Upload blobs in chunks of this many bytes.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Push a local image (all its stored platforms) to a registry.

    `hostrt push HOST:PORT/NAME[:TAG]` pushes the local image of that name, or else the local
    NAME:TAG (so a built `busybox` can be pushed as `127.0.0.1:5000/busybox` without a tag step).
    """
    from hostrt.images.push import push as do_push

    images = _images()
    with _progress(quiet) as progress:
        result = do_push(images, image, destination, insecure=insecure_registry or (), progress=progress, chunk_size=chunk_size)
    typer.echo(f"{result.source} -> {result.reference}: digest {result.digest} ({result.uploaded} blobs uploaded, {result.mounted} mounted, {result.skipped} already there)")


def images(output: FormatOpt = "text") -> None:
    """List local images."""
    from hostrt.images.local import summaries

    rows = summaries(_images().store)
    if output == "json":
        typer.echo(json.dumps([r.model_dump() for r in rows], indent=2))
        return
    typer.echo(f"{'NAME':<40} {'DIGEST':<19} {'PLATFORMS':<28} SIZE")
    for r in rows:
        typer.echo(f"{r.name:<40} {r.digest[:19]:<19} {','.join(r.platforms):<28} {_human(r.size)}")


def rmi(names: Annotated[list[str], typer.Argument(help="Images to remove.")]) -> None:
    """Remove images (their names; content no other image uses is deleted)."""
    from hostrt.engine.records import ConflictError, RecordStore
    from hostrt.images.local import name_of, remove
    from hostrt.paths import Paths

    local = _images()
    records = RecordStore(Paths.default().containers).all()
    for name in names:
        users = [r for r in records if r.image == name_of(name)]
        if users:  # their overlays stack on this image's layer directories
            raise ConflictError(f"unable to remove image {name}: container {users[0].id[:12]} ({users[0].name}) "
                                f"uses it; remove the container first")
        removed_name, blobs = remove(local, name)
        typer.echo(f"Untagged: {removed_name} ({len(blobs)} blobs deleted)")


def tag(
    source: Annotated[str, typer.Argument(help="Existing image.")],
    target: Annotated[str, typer.Argument(help="New name.")],
) -> None:
    """Give an image another name."""
    from hostrt.images.local import tag as do_tag

    typer.echo(do_tag(_images().store, source, target))


def inspect(
    image: Annotated[str, typer.Argument(help="Image name or digest.")],
    platform: PlatformOpt = None,
    output: FormatOpt = "json",
) -> None:
    """Show an image's config, platform, layers and size."""
    from hostrt.images.local import details

    d = details(_images().store, image, _platform(platform))
    if output == "json":
        typer.echo(json.dumps(d.model_dump(), indent=2))
        return
    typer.echo(f"{d.name}  {d.platform}  {d.manifest_digest}  {_human(d.size)}")
    for layer in d.layers:
        typer.echo(f"  {layer.digest}  {_human(layer.size)}")


def login(
    registry: Annotated[str, typer.Argument(help="Registry host[:port].")],
    username: Annotated[Optional[str], typer.Option("--username", "-u")] = None,
    password: Annotated[Optional[str], typer.Option("--password", "-p", help="Prefer --password-stdin.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    insecure_registry: InsecureOpt = None,
) -> None:
    """Check credentials against a registry and store them (mode 0600)."""
    from hostrt.errors import UsageError
    from hostrt.images.auth import Credentials, save_credentials
    from hostrt.images.registry import Registry

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not username:
        username = typer.prompt("Username")
    if password is None:
        password = typer.prompt("Password", hide_input=True)
    if not username or not password:
        raise UsageError("login needs a username and a password")
    creds = Credentials(username, password)
    Registry(registry, creds, insecure_registry or ()).ping()
    path = save_credentials(registry, creds)
    typer.echo(f"Login succeeded (credentials saved in {path})")


def logout(registry: Annotated[str, typer.Argument(help="Registry host[:port].")]) -> None:
    """Forget stored credentials for a registry."""
    from hostrt.images.auth import remove_credentials

    typer.echo("Removed login credentials" if remove_credentials(registry) else f"Not logged in to {registry}")


def load(
    input_: Annotated[Path, typer.Option("--input", "-i", help="docker save archive, OCI archive or OCI layout directory.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Name for an image the archive leaves unnamed.")] = None,
) -> None:
    """Load images from an archive or an OCI layout."""
    from hostrt.images.archive import load as do_load

    result = do_load(_images(), input_, name)
    for n in result.names:
        typer.echo(f"Loaded image: {n}")
    for d in result.unnamed:
        typer.echo(f"Loaded unnamed image {d} (give it a name with --name)")


def save(
    names: Annotated[list[str], typer.Argument(help="Images to save.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The OCI archive to write.")],
) -> None:
    """Save images to an OCI archive (a tar of an OCI layout)."""
    from hostrt.images.archive import save as do_save

    saved = do_save(_images(), names, output)
    typer.echo(f"Saved {', '.join(saved)} to {output}")


def import_(
    tarball: Annotated[Path, typer.Argument(help="A rootfs tarball (plain or gzip).")],
    reference: Annotated[str, typer.Argument(help="Name of the new image.")],
    platform: PlatformOpt = None,
) -> None:
    """Create a one-layer image from a rootfs tarball."""
    from hostrt.images.archive import import_rootfs

    typer.echo(import_rootfs(_images(), tarball, reference, _platform(platform)))


@image_app.command("build")
def build(recipe: Annotated[Path, typer.Argument(help="A recipe directory (with recipe.toml), e.g. images/busybox.")]) -> None:
    """Build a multi-platform image from a recipe of Debian packages."""
    from hostrt.images.recipe import build as do_build
    from hostrt.paths import Paths

    images = _images()
    name, index = do_build(recipe, images.store, Paths.default().cache / "debs", log=lambda m: typer.echo(m, err=True))
    typer.echo(f"{name}: {index.digest}")


@image_app.command("prune")
def prune() -> None:
    """Delete blobs and unpacked layers that no image name reaches."""
    from hostrt.images.local import collect

    blobs, layers = collect(_images())
    typer.echo(f"Deleted {len(blobs)} blobs and {len(layers)} unpacked layers")


def register(app: typer.Typer) -> None:
    """Add the image commands to the main app."""
    for command in (pull, push, images, rmi, tag, login, logout, load, save):  # inspect: cli_containers
        app.command()(command)
    app.command("import")(import_)
    image_app.command("ls")(images)
    image_app.command("rm")(rmi)
    image_app.command("inspect")(inspect)
    app.add_typer(image_app, name="image")
