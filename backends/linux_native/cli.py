"""The runc-compatible command line, parsed from a table (argparse costs milliseconds of
import on every call). Like runc's urfave/cli it takes -flag and --flag, `--flag=value`,
and flags before or after the container id; holds no logic beyond parsing."""

from __future__ import annotations

from backends.linux_native.errors import UsageError

BOOL, STR, INT, LIST = "bool", "str", "int", "list"

GLOBAL_FLAGS: dict[str, tuple[str, str]] = {
    "root": ("root", STR), "log": ("log", STR), "log-format": ("log_format", STR),
    "debug": ("debug", BOOL), "systemd-cgroup": ("systemd_cgroup", BOOL), "criu": ("criu", STR),
    "rootless": ("rootless", STR),
}

_CREATE = {
    "bundle": ("bundle", STR), "b": ("bundle", STR), "pid-file": ("pid_file", STR),
    "console-socket": ("console_socket", STR), "no-pivot": ("no_pivot", BOOL),
    "no-new-keyring": ("no_new_keyring", BOOL), "preserve-fds": ("preserve_fds", INT),
}

# command -> (flags, positional names; a trailing "*" takes the rest verbatim)
COMMANDS: dict[str, tuple[dict[str, tuple[str, str]], tuple[str, ...]]] = {
    "create": (_CREATE, ("id",)),
    "run": ({**_CREATE, "detach": ("detach", BOOL), "d": ("detach", BOOL), "keep": ("keep", BOOL)}, ("id",)),
    "start": ({}, ("id",)),
    "state": ({}, ("id",)),
    "kill": ({"all": ("all", BOOL), "a": ("all", BOOL)}, ("id", "signal?")),
    "delete": ({"force": ("force", BOOL), "f": ("force", BOOL)}, ("id",)),
    "exec": (
        {
            "process": ("process", STR), "p": ("process", STR), "detach": ("detach", BOOL), "d": ("detach", BOOL),
            "pid-file": ("pid_file", STR), "tty": ("tty", BOOL), "t": ("tty", BOOL),
            "console-socket": ("console_socket", STR), "env": ("env", LIST), "e": ("env", LIST),
            "cwd": ("cwd", STR), "user": ("user", STR), "u": ("user", STR),
            "additional-gids": ("additional_gids", LIST), "g": ("additional_gids", LIST),
            "cap": ("cap", LIST), "c": ("cap", LIST), "no-new-privs": ("no_new_privs", BOOL),
            "preserve-fds": ("preserve_fds", INT), "apparmor": ("apparmor", STR),
            "process-label": ("process_label", STR),
        },
        ("id", "args*"),
    ),
    "pause": ({}, ("id",)),
    "resume": ({}, ("id",)),
    "ps": ({"format": ("format", STR), "f": ("format", STR)}, ("id", "ps_args*")),
    "list": ({"format": ("format", STR), "f": ("format", STR), "quiet": ("quiet", BOOL), "q": ("quiet", BOOL)}, ()),
    "update": (
        {
            "resources": ("resources", STR), "r": ("resources", STR), "memory": ("memory", STR),
            "memory-reservation": ("memory_reservation", STR), "memory-swap": ("memory_swap", STR),
            "kernel-memory": ("kernel_memory", STR), "cpu-shares": ("cpu_shares", INT),
            "cpu-quota": ("cpu_quota", INT), "cpu-period": ("cpu_period", INT),
            "cpuset-cpus": ("cpuset_cpus", STR), "cpuset-mems": ("cpuset_mems", STR),
            "pids-limit": ("pids_limit", INT), "blkio-weight": ("blkio_weight", INT),
        },
        ("id",),
    ),
    "events": ({"interval": ("interval", STR), "stats": ("stats", BOOL)}, ("id",)),
    "features": ({}, ()),
    "spec": ({"bundle": ("bundle", STR), "b": ("bundle", STR), "rootless": ("rootless", BOOL)}, ()),
}


class Args:
    """Parsed flags as attributes; unknown attributes read as None."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> object:
        return None


def _take(flags: dict, argv: list[str], i: int, values: dict) -> int:
    """Parse the flag at argv[i]; return the index after it."""
    raw = argv[i].lstrip("-")
    name, eq, inline = raw.partition("=")
    if name not in flags:
        raise UsageError(f"flag provided but not defined: -{name}")
    dest, kind = flags[name]
    if kind == BOOL:
        values[dest] = inline.lower() not in ("false", "0") if eq else True
        return i + 1
    if not eq:
        if i + 1 >= len(argv):
            raise UsageError(f"flag needs an argument: -{name}")
        inline, i = argv[i + 1], i + 1
    if kind == INT:
        try:
            values[dest] = int(inline)
        except ValueError:
            raise UsageError(f"invalid value {inline!r} for flag -{name}") from None
    elif kind == LIST:
        values.setdefault(dest, []).append(inline)
    else:
        values[dest] = inline
    return i + 1


def parse(argv: list[str]) -> tuple[Args, str, Args]:
    """(global options, command, command options)."""
    glob: dict = {"root": "/run/hostrt-runtime", "log_format": "text"}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        if argv[i] in ("-h", "--help", "-v", "--version"):
            return Args(**glob), argv[i].lstrip("-")[0], Args()
        i = _take(GLOBAL_FLAGS, argv, i, glob)
    if i >= len(argv):
        raise UsageError("no command given")
    command = argv[i]
    if command not in COMMANDS:
        raise UsageError(f"no such command: {command}")
    flags, positional = COMMANDS[command]
    values: dict = {}
    rest: list[str] = []
    i += 1
    wants_rest = bool(positional) and positional[-1].endswith("*")
    fixed = [p for p in positional if not p.endswith("*")]
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i + 1 :])
            break
        if arg.startswith("-") and len(arg) > 1 and not (wants_rest and len(rest) >= len(fixed)):
            if arg in ("-h", "--help"):
                return Args(**glob), "help", Args(command=command)
            i = _take(flags, argv, i, values)
            continue
        rest.append(arg)
        i += 1
    for name in fixed:
        key = name.rstrip("?")
        if rest:
            values[key] = rest.pop(0)
        elif not name.endswith("?"):
            raise UsageError(f'"{command}" requires a container id' if key == "id" else f"missing {key}")
    if wants_rest:
        values[positional[-1].rstrip("*")] = rest
    elif rest:
        raise UsageError(f'"{command}" got unexpected arguments: {" ".join(rest)}')
    return Args(**glob), command, Args(**values)


USAGE = """usage: hostrt-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND [FLAGS] ID

commands:
  create --bundle B [--pid-file F] [--console-socket S] [--no-pivot] ID
  start ID            run [-d] [--bundle B] [--pid-file F] ID
  state ID            kill [--all] ID [SIGNAL]      delete [--force] ID
  exec [--process F | -t -d -e K=V --cwd D -u UID[:GID] --pid-file F] ID [ARGS...]
  pause ID            resume ID                      ps [--format json] ID
  list [--format json] [-q]                          update [--memory N ...] ID
  events [--stats] [--interval 5s] ID                features            spec [--bundle B]
"""
