"""Container commands of the `hostrt` CLI, spelled as docker spells them.

Only parses flags and prints; the lifecycle lives in `hostrt.engine`. Flags after the image
belong to the container's command (`hostrt run busybox ls -l`), as in docker.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Optional

import typer

from hostrt.errors import UsageError

_DOCKER_STYLE = {"allow_interspersed_args": False}
Multi = Optional[list[str]]


def _engine():  # noqa: ANN202
    from hostrt.engine.containers import Engine

    return Engine.open()


def _options(name, command, entrypoint, env, env_file, workdir, user, volume, tmpfs, read_only, memory, cpus,  # noqa: ANN001, ANN202
             pids_limit, cap_add, cap_drop, security_opt, hostname, network, tty, interactive, publish=None):
    from hostrt.engine import options as opts
    from hostrt.network.choice import check_network, parse_publish

    check_network(network)
    no_new_privileges, seccomp = opts.parse_security_opts(security_opt or [])
    return opts.RunOptions(
        name=name,
        command=list(command or []),
        entrypoint=None if entrypoint is None else ([entrypoint] if entrypoint else []),
        env=opts.parse_env(env or [], env_file or []),
        workdir=workdir,
        user=user,
        volumes=[opts.parse_volume(v) for v in volume or []],
        tmpfs=list(tmpfs or []),
        read_only=read_only,
        memory=opts.parse_memory(memory) if memory else None,
        cpus=opts.parse_cpus(cpus) if cpus else None,
        pids_limit=pids_limit,
        cap_add=[opts.normalise_capability(c, "--cap-add") for c in cap_add or []],
        cap_drop=[opts.normalise_capability(c, "--cap-drop") for c in cap_drop or []],
        no_new_privileges=no_new_privileges,
        seccomp=seccomp,
        hostname=hostname,
        network=network,
        publish=parse_publish(publish or [], network),
        tty=tty,
        interactive=interactive,
    )


def _create(image, command, *, rm, platform, backend, pull, **flags):  # noqa: ANN001, ANN003, ANN202
    from hostrt.engine.create import CreateRequest, create_container

    if backend not in (None, "native", "lightvm"):
        raise UsageError(f"invalid --backend value {backend!r}: expected native or lightvm")
    options = _options(command=command, **flags)
    request = CreateRequest(image=image, options=options, platform=platform, backend=backend, pull=pull, auto_remove=rm)
    engine = _engine()
    return engine, request, create_container


def run(
    image: Annotated[str, typer.Argument(help="Image to run.")],
    command: Annotated[Optional[list[str]], typer.Argument(help="Command and arguments.")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background, print the ID.")] = False,
    rm: Annotated[bool, typer.Option("--rm", help="Remove the container when it exits.")] = False,
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="Keep stdin open.")] = False,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="Allocate a pseudo-terminal.")] = False,
    name: Annotated[Optional[str], typer.Option("--name")] = None,
    env: Annotated[Multi, typer.Option("--env", "-e", help="KEY=VALUE (repeatable).")] = None,
    env_file: Annotated[Multi, typer.Option("--env-file")] = None,
    workdir: Annotated[Optional[str], typer.Option("--workdir", "-w")] = None,
    user: Annotated[Optional[str], typer.Option("--user", "-u")] = None,
    entrypoint: Annotated[Optional[str], typer.Option("--entrypoint")] = None,
    volume: Annotated[Multi, typer.Option("--volume", "-v", help="HOSTPATH:CTRPATH[:ro].")] = None,
    tmpfs: Annotated[Multi, typer.Option("--tmpfs")] = None,
    read_only: Annotated[bool, typer.Option("--read-only")] = False,
    memory: Annotated[Optional[str], typer.Option("--memory", "-m")] = None,
    cpus: Annotated[Optional[str], typer.Option("--cpus")] = None,
    pids_limit: Annotated[Optional[int], typer.Option("--pids-limit")] = None,
    cap_add: Annotated[Multi, typer.Option("--cap-add")] = None,
    cap_drop: Annotated[Multi, typer.Option("--cap-drop")] = None,
    security_opt: Annotated[Multi, typer.Option("--security-opt")] = None,
    hostname: Annotated[Optional[str], typer.Option("--hostname", "-h")] = None,
    network: Annotated[str, typer.Option("--network", help="bridge, none, host, container:NAME or a user network.")] = "bridge",
    publish: Annotated[Multi, typer.Option("--publish", "-p", help="IP:HOSTPORT:CTRPORT/PROTO as docker -p; IP, HOSTPORT, PROTO optional (repeatable).")] = None,
    platform: Annotated[Optional[str], typer.Option("--platform", help="os/arch[/variant].")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="native or lightvm (default: chosen per image).")] = None,
    pull: Annotated[str, typer.Option("--pull", help="missing, always or never.")] = "missing",
    explain: Annotated[bool, typer.Option("--explain", help="Print the backend decision and exit.")] = False,
) -> int:
    """Create and start a container (foreground unless -d)."""
    engine, request, create_container = _create(
        image, command, rm=rm, platform=platform, backend=backend, pull=pull, name=name, entrypoint=entrypoint,
        env=env, env_file=env_file, workdir=workdir, user=user, volume=volume, tmpfs=tmpfs, read_only=read_only,
        memory=memory, cpus=cpus, pids_limit=pids_limit, cap_add=cap_add, cap_drop=cap_drop,
        security_opt=security_opt, hostname=hostname, network=network, tty=tty, interactive=interactive,
        publish=publish)
    if explain:
        from hostrt.engine.create import explain as explain_decision

        image_platform, decision = explain_decision(engine, request)
        typer.echo(f"image platform: {image_platform}")
        typer.echo(f"backend: {decision.backend}" + (f" ({decision.emulator}, {decision.accelerator})" if decision.emulator else ""))
        for reason in decision.reasons:
            typer.echo(f"  - {reason}")
        _explain_cost(engine, image_platform, decision.backend)
        return 0
    from hostrt.engine.create import start_created

    began_at, began = time.time(), time.monotonic()
    record = create_container(engine, request)
    if record.backend == "lightvm" and record.machine:
        from hostrt.machine_costs import note_vm_start

        note_vm_start(engine.paths.machines, record.machine, began_at, time.monotonic() - began)
    return start_created(engine, record, detach, interactive)


def _explain_cost(engine, image_platform: str, backend: str) -> None:  # noqa: ANN001
    """The expected cost of the decision: the machine, how warm it is, its measured starts."""
    from hostrt.machine_costs import explain_cost
    from hostrt.platform import ImagePlatform, detect_host

    for line in explain_cost(engine.paths.machines, detect_host().architecture,
                             ImagePlatform.parse(image_platform).architecture, backend):
        typer.echo(line)


def create(
    image: Annotated[str, typer.Argument()],
    command: Annotated[Optional[list[str]], typer.Argument()] = None,
    rm: Annotated[bool, typer.Option("--rm")] = False,
    interactive: Annotated[bool, typer.Option("--interactive", "-i")] = False,
    name: Annotated[Optional[str], typer.Option("--name")] = None,
    env: Annotated[Multi, typer.Option("--env", "-e")] = None,
    workdir: Annotated[Optional[str], typer.Option("--workdir", "-w")] = None,
    user: Annotated[Optional[str], typer.Option("--user", "-u")] = None,
    entrypoint: Annotated[Optional[str], typer.Option("--entrypoint")] = None,
    volume: Annotated[Multi, typer.Option("--volume", "-v")] = None,
    memory: Annotated[Optional[str], typer.Option("--memory", "-m")] = None,
    pids_limit: Annotated[Optional[int], typer.Option("--pids-limit")] = None,
    network: Annotated[str, typer.Option("--network")] = "bridge",
    publish: Annotated[Multi, typer.Option("--publish", "-p")] = None,
    platform: Annotated[Optional[str], typer.Option("--platform")] = None,
    pull: Annotated[str, typer.Option("--pull")] = "missing",
) -> None:
    """Create a container without starting it; prints its ID."""
    engine, request, create_container = _create(
        image, command, rm=rm, platform=platform, backend=None, pull=pull, name=name, entrypoint=entrypoint, env=env,
        env_file=None, workdir=workdir, user=user, volume=volume, tmpfs=None, read_only=False, memory=memory,
        cpus=None, pids_limit=pids_limit, cap_add=None, cap_drop=None, security_opt=None, hostname=None,
        network=network, tty=False, interactive=interactive, publish=publish)
    typer.echo(create_container(engine, request).id)


def start(
    containers: Annotated[list[str], typer.Argument()],
    attach: Annotated[bool, typer.Option("--attach", "-a", help="Attach to output and return its exit code.")] = False,
) -> int:
    """Start created or stopped containers."""
    from hostrt.engine.records import ConflictError

    engine = _engine()
    for ref in containers:
        record = engine.find(ref)
        if record.status in ("running", "paused"):
            raise ConflictError(f"container {record.name} is already {record.status}")
        if attach:
            return engine.run_attached(record, record.options.interactive)
        engine.start_detached(record)
        typer.echo(ref)
    return 0


def stop(
    containers: Annotated[list[str], typer.Argument()],
    time_: Annotated[float, typer.Option("--time", "-t", help="Seconds to wait before SIGKILL.")] = 10,
) -> None:
    """Stop containers: their stop signal, then SIGKILL after --time seconds."""
    engine = _engine()
    for ref in containers:
        engine.stop(ref, time_)
        typer.echo(ref)


def kill(
    containers: Annotated[list[str], typer.Argument()],
    signal: Annotated[str, typer.Option("--signal", "-s")] = "SIGKILL",
) -> None:
    """Send a signal to containers (default SIGKILL)."""
    engine = _engine()
    for ref in containers:
        engine.kill(ref, signal)
        typer.echo(ref)


def restart(
    containers: Annotated[list[str], typer.Argument()],
    time_: Annotated[float, typer.Option("--time", "-t")] = 10,
) -> None:
    """Stop then start containers."""
    engine = _engine()
    for ref in containers:
        record = engine.stop(ref, time_)
        engine.start_detached(record)
        typer.echo(ref)


def rm(
    containers: Annotated[list[str], typer.Argument()],
    force: Annotated[bool, typer.Option("--force", "-f", help="Kill a running container first.")] = False,
) -> None:
    """Remove containers and everything they own."""
    engine = _engine()
    for ref in containers:
        engine.remove(ref, force)
        typer.echo(ref)


def _status_text(record) -> str:  # noqa: ANN001
    if record.status == "running":
        return f"Up {_ago(record.started_at)}"
    if record.status == "paused":
        return f"Up {_ago(record.started_at)} (Paused)"
    if record.status == "exited":
        return f"Exited ({record.exit_code}) {_ago(record.finished_at)} ago"
    return "Created"


def _ago(stamp: float | None) -> str:
    seconds = int(time.time() - (stamp or time.time()))
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


def ps(
    all_: Annotated[bool, typer.Option("--all", "-a", help="Show stopped containers too.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only IDs.")] = False,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """List containers."""
    records = _engine().list(all_)
    if quiet:
        for record in records:
            typer.echo(record.id[:12])
        return
    if output == "json":
        typer.echo(json.dumps([r.model_dump(mode="json", exclude={"options"}) for r in records], indent=2))
        return
    typer.echo(f"{'CONTAINER ID':<14}{'IMAGE':<20}{'COMMAND':<22}{'STATUS':<30}{'BACKEND':<9}NAMES")
    for r in records:
        command = " ".join(r.args)
        command = f'"{command[:18]}…"' if len(command) > 19 else f'"{command}"'
        typer.echo(f"{r.id[:12]:<14}{r.image[:19]:<20}{command:<22}{_status_text(r):<30}{r.backend:<9}{r.name}")


def logs(
    container: Annotated[str, typer.Argument()],
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    tail: Annotated[Optional[str], typer.Option("--tail", help="Number of lines from the end, or all.")] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t")] = False,
) -> None:
    """Show a container's output (stdout to stdout, stderr to stderr)."""
    if tail not in (None, "all") and not (tail or "").isdigit():
        raise UsageError(f"invalid --tail value {tail!r}: expected a number or all")
    engine = _engine()
    record = engine.find(container)
    backend = engine.backend(record)
    entries = backend.logs(record)
    shown = entries[-int(tail):] if tail and tail.isdigit() else entries
    if tail == "0":
        shown = []

    def emit(entry: dict) -> None:
        stream = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
        stream.write((entry["time"] + " " if timestamps else "") + entry["log"])
        stream.flush()

    for entry in shown:
        emit(entry)
    if not follow:
        return
    seen = len(entries)
    while True:
        running = engine.find(record.id).status in ("running", "paused")
        entries = backend.logs(record)
        for entry in entries[seen:]:
            emit(entry)
        seen = len(entries)
        if not running:
            return
        time.sleep(0.2)


def wait(containers: Annotated[list[str], typer.Argument()]) -> None:
    """Block until containers stop; print their exit codes."""
    engine = _engine()
    for ref in containers:
        typer.echo(str(engine.wait(ref).exit_code))


def pause(containers: Annotated[list[str], typer.Argument()]) -> None:
    """Freeze all processes of containers."""
    engine = _engine()
    for ref in containers:
        engine.pause(ref)
        typer.echo(ref)


def unpause(containers: Annotated[list[str], typer.Argument()]) -> None:
    """Thaw paused containers."""
    engine = _engine()
    for ref in containers:
        engine.pause(ref, resume=True)
        typer.echo(ref)


def register(app: typer.Typer) -> None:
    """Add the container commands to the main app."""
    app.command(context_settings=_DOCKER_STYLE)(run)
    app.command(context_settings=_DOCKER_STYLE)(create)
    for command in (start, stop, kill, restart, rm, ps, logs, wait, pause, unpause, inspect, cp, top):
        app.command()(command)
    app.command("exec", context_settings=_DOCKER_STYLE)(exec_)
    app.add_typer(system_app, name="system")


def inspect(
    names: Annotated[list[str], typer.Argument(help="Containers or images.")],
    platform: Annotated[Optional[str], typer.Option("--platform", help="For images: which platform.")] = None,
) -> None:
    """Show low-level information on containers (or, when no container matches, images) as JSON."""
    from hostrt.errors import NotFoundError
    from hostrt.network.report import network_settings

    engine = _engine()
    found: list[dict] = []
    for name in names:
        try:
            record = engine.find(name)
        except NotFoundError:
            from hostrt.images.local import LocalImages, details
            from hostrt.platform import ImagePlatform

            image = details(LocalImages.open().store, name, ImagePlatform.parse(platform) if platform else None)
            found.append(image.model_dump(mode="json"))
            continue
        data = record.model_dump(mode="json")
        data["State"] = {"Status": record.status, "Running": record.status == "running",
                         "Paused": record.status == "paused", "Pid": record.pid or 0,
                         "ExitCode": record.exit_code or 0, "OOMKilled": record.oom_killed}
        data["NetworkSettings"] = network_settings(engine.records.dir_of(record.id))
        found.append(data)
    typer.echo(json.dumps(found, indent=2))


def exec_(
    container: Annotated[str, typer.Argument()],
    command: Annotated[list[str], typer.Argument()],
    detach: Annotated[bool, typer.Option("--detach", "-d")] = False,
    interactive: Annotated[bool, typer.Option("--interactive", "-i")] = False,
    tty: Annotated[bool, typer.Option("--tty", "-t")] = False,
    env: Annotated[Multi, typer.Option("--env", "-e")] = None,
    workdir: Annotated[Optional[str], typer.Option("--workdir", "-w")] = None,
    user: Annotated[Optional[str], typer.Option("--user", "-u")] = None,
) -> int:
    """Run a command in a running container; exits with its code."""
    from hostrt.engine.records import ConflictError

    if tty:
        raise UsageError("-t (a pseudo-terminal) is not supported by this version of hostrt; run without -t")
    engine = _engine()
    record = engine.find(container)
    if record.status != "running":
        raise ConflictError(f"container {record.name} is not running")
    return engine.backend(record).exec(record, list(command), list(env or []), workdir, user, detach, interactive)


def system_prune(
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove stopped containers and what a crashed hostrt left behind (mounts, runtime state, cgroups)."""
    from hostrt.engine.prune import prune

    if not force and sys.stdin.isatty() and not typer.confirm("This removes all stopped containers. Continue?"):
        return
    report = prune(_engine())
    for container_id in report.containers:
        typer.echo(f"deleted container {container_id[:12]}")
    for leftover in report.leftovers:
        typer.echo(f"removed {leftover}")


system_app = typer.Typer(rich_markup_mode=None, help="Manage hostrt itself.", no_args_is_help=True)
system_app.command("prune")(system_prune)


def cp(
    source: Annotated[str, typer.Argument(help="CONTAINER:PATH or a host path.")],
    destination: Annotated[str, typer.Argument(help="A host path or CONTAINER:PATH.")],
) -> None:
    """Copy files between a container and the host (paths resolve inside the container's root)."""
    from pathlib import Path

    engine = _engine()
    # hostrt.engine.copy is imported past the native check: it works through Linux's openat2.
    if ":" in source and not source.startswith(("/", ".")):
        name, _, path = source.partition(":")
        record = engine.find(name)
        _native_only(record, "cp")
        from hostrt.engine.copy import copy_out

        copy_out(engine.records.dir_of(record.id) / "rootfs", path, Path(destination))
    elif ":" in destination and not destination.startswith(("/", ".")):
        name, _, path = destination.partition(":")
        record = engine.find(name)
        _native_only(record, "cp")
        from hostrt.engine.copy import copy_in

        copy_in(Path(source), engine.records.dir_of(record.id) / "rootfs", path)
    else:
        raise UsageError("cp needs CONTAINER:PATH on one side, e.g. hostrt cp web:/etc/hosts ./hosts")


def _native_only(record, command: str) -> None:  # noqa: ANN001
    if record.backend != "native":
        raise UsageError(f"{command} works on native containers only; {record.name} runs in machine {record.machine}")


def top(container: Annotated[str, typer.Argument()]) -> None:
    """The processes of a running container (host PIDs)."""
    from pathlib import Path

    from hostrt.engine.records import ConflictError

    engine = _engine()
    record = engine.find(container)
    _native_only(record, "top")
    if record.status not in ("running", "paused"):
        raise ConflictError(f"container {record.name} is not running")
    pids = json.loads(engine.runtime.call("ps", "--format", "json", record.id).stdout or b"[]")
    typer.echo(f"{'PID':>8}  {'UID':>6}  CMD")
    for pid in pids:
        try:
            uid = next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("Uid:"))
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # exited meanwhile
        typer.echo(f"{pid:>8}  {uid:>6}  {command}")


def system_df() -> None:
    """Disk used by images, unpacked layers, containers' writable layers and logs."""
    from pathlib import Path

    from hostrt.paths import Paths

    def size(path: Path) -> int:
        if not path.exists():
            return 0
        total = 0
        for entry in [path, *path.rglob("*")]:
            try:
                if entry.is_file() and not entry.is_symlink():
                    total += entry.stat().st_size
            except OSError:
                continue
        return total

    paths = Paths.default()
    containers = [c for c in paths.containers.iterdir() if len(c.name) == 64] if paths.containers.is_dir() else []
    rows = [("Images (content store)", size(paths.store)), ("Unpacked layers", size(paths.layers)),
            ("Containers (writable layers)", sum(size(c / "upper") for c in containers)),
            ("Container logs", sum(size(log) for c in containers for log in c.glob("container.log*")))]
    typer.echo(f"{'TYPE':<30}{'SIZE':>12}")
    for label, value in rows:
        typer.echo(f"{label:<30}{value / 1e6:>10.1f}MB")


system_app.command("df")(system_df)
