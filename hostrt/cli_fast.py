"""A fast path for the hottest command, `hostrt run`, that skips typer and pydantic.

Importing typer and pydantic and building the typer app costs several hundred milliseconds,
more than running a container. When every flag of a `run` is in the small set below, its
value is valid, and the image was resolved before for the native backend (`run_cache`), this
module does the run with the standard library and the engine's own shared code. Anything
else — another flag, a bad value, `--help`, an image not seen yet — returns None and the
typer CLI (`cli_containers.run`, the definition of the command) handles it, so errors and
exit codes come from one place. Flags stop at the image, as docker's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

_BOOL_FLAGS = {"--detach": "detach", "-d": "detach", "--rm": "rm", "--interactive": "interactive",
               "-i": "interactive", "--read-only": "read_only"}
_VALUE_FLAGS = {"--name": "name", "--workdir": "workdir", "-w": "workdir", "--user": "user", "-u": "user",
                "--hostname": "hostname", "-h": "hostname", "--network": "network", "--pull": "pull",
                "--env": "env", "-e": "env"}
_LIST_VALUES = ("env",)
_FAST_PULL = ("missing", "never")  # with the image present both use it; `always` pulls
_NETWORKS = ("bridge", "slirp4netns", "none", "host")  # user networks and container:NAME take the full path


@dataclass
class FastRun:
    """A `run` the fast path can do: parsed like typer would parse it."""

    image: str
    command: list[str]
    detach: bool = False
    rm: bool = False
    interactive: bool = False
    read_only: bool = False
    name: str | None = None
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    network: str = "bridge"
    pull: str = "missing"
    env: list[str] = field(default_factory=list)


def parse_run(args: list[str]) -> FastRun | None:
    """The arguments after `run`, or None when any of them needs the full CLI."""
    values: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg == "-":
            break
        flag, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if flag in _BOOL_FLAGS and not eq:
            values[_BOOL_FLAGS[flag]] = True
            i += 1
        elif flag in _VALUE_FLAGS:
            if not eq:
                if i + 1 >= len(args):
                    return None
                inline, i = args[i + 1], i + 1
            key = _VALUE_FLAGS[flag]
            if key in _LIST_VALUES:
                values.setdefault(key, []).append(inline)
            else:
                values[key] = inline
            i += 1
        else:
            return None  # `--`, combined short flags, -t, -p, -v, --help, ...: the full CLI
    if i >= len(args):
        return None
    run = FastRun(image=args[i], command=args[i + 1:], **values)
    if run.pull not in _FAST_PULL or run.network not in _NETWORKS:
        return None
    return run


def run_fast(args: list[str]) -> int | None:
    """Do `hostrt run ARGS` and return its exit code, or None to let the typer CLI do it."""
    if os.environ.get("HOSTRT_NO_FAST_PATH") not in (None, "", "0"):
        return None
    run = parse_run(args)
    if run is None:
        return None
    from hostrt.engine import run_cache
    from hostrt.engine.option_values import parse_env
    from hostrt.errors import UsageError
    from hostrt.paths import Paths

    paths = Paths.default()
    image = run_cache.lookup(paths, run.image)
    if image is None:
        return None
    try:
        env = parse_env(run.env)
    except UsageError:
        return None  # the full CLI reports it
    from hostrt.engine.containers import Engine
    from hostrt.engine.create import make_container, start_created
    from hostrt.engine.plain_records import PlainOptions, PlainRecordStore
    from hostrt.engine.runtime_cli import Runtime

    options = PlainOptions(name=run.name, command=list(run.command), env=env, workdir=run.workdir, user=run.user,
                           read_only=run.read_only, hostname=run.hostname, network=run.network,
                           interactive=run.interactive)
    engine = Engine(paths, PlainRecordStore(paths.containers), Runtime.local(paths.runtime_state))
    fields = {**image.fields, "name": run.name, "backend": "native", "machine": None, "options": options,
              "auto_remove": run.rm}
    record = make_container(engine, fields, image, lambda: image.lower_dirs)
    return start_created(engine, record, run.detach, run.interactive)
