"""Turn an image's config plus the user's run options into an OCI runtime `config.json`.

Docker's semantics for what runs (entrypoint/cmd, env, user, workdir) and docker's defaults
for confinement (capabilities, masked paths, seccomp) — the latter read from the tables in
`hostrt.spec_defaults`. The result is a plain dict for the runtime; nothing downstream
re-reads the image config.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostrt.errors import UsageError
from hostrt.spec_defaults import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    DEFAULT_MOUNTS,
    DEFAULT_PATH,
    MASKED_PATHS,
    READONLY_PATHS,
)
from hostrt.users import resolve_user

if TYPE_CHECKING:  # the model is pydantic; the fast run path passes a plain mirror of it
    from hostrt.engine.options import RunOptions

OCI_VERSION = "1.1.0"
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class ContainerFiles:
    """Per-container files bind-mounted over the image's (docker writes these three)."""

    hostname: Path
    hosts: Path
    resolv_conf: Path


def process_args(image_config: dict[str, Any], options: RunOptions) -> list[str]:
    """Docker's rule: entrypoint (overridden or the image's) followed by the command.

    Overriding the entrypoint also drops the image's Cmd, so `--entrypoint sh img` runs `sh`.
    """
    if options.entrypoint is not None:
        entrypoint, default_cmd = options.entrypoint, []
    else:
        entrypoint, default_cmd = list(image_config.get("Entrypoint") or []), list(image_config.get("Cmd") or [])
    args = entrypoint + (options.command or default_cmd)
    if not args:
        raise UsageError("no command specified: the image has no Entrypoint or Cmd and none was given")
    return args


def merged_env(image_config: dict[str, Any], options: RunOptions, hostname: str, home: str) -> list[str]:
    """Image env, then hostrt's (PATH, HOSTNAME, HOME, TERM), then the user's; later keys win."""
    env: dict[str, str] = {"PATH": DEFAULT_PATH}
    for item in image_config.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    env["HOSTNAME"] = hostname
    env.setdefault("HOME", home)
    if options.tty:
        env["TERM"] = "xterm"
    env.update(options.env)
    return [f"{key}={value}" for key, value in env.items()]


def capabilities(options: RunOptions) -> list[str]:
    """Docker's 14 defaults with --cap-add/--cap-drop applied (ALL allowed on either side)."""
    if "ALL" in options.cap_add:
        chosen = set(ALL_CAPABILITIES)
    else:
        chosen = set(DEFAULT_CAPABILITIES) | set(options.cap_add)
    if "ALL" in options.cap_drop:
        chosen = {cap for cap in options.cap_add if cap != "ALL"}
    else:
        chosen -= set(options.cap_drop)
    return sorted(chosen)


def platform_architecture(platform: str) -> str:
    """The architecture of a normalised platform string: `linux/arm64` -> `arm64`."""
    return platform.split("/")[1] if platform.count("/") else platform


def seccomp_profile(options: RunOptions, caps: list[str], architecture: str,
                    kernel: tuple[int, int] | None = None) -> dict[str, Any] | None:
    """Docker's default profile, or the user's file, resolved for this container's capabilities
    and the machine that runs it (OCI architecture, kernel version); None when unconfined."""
    from hostrt import seccomp_profile as profiles

    if options.seccomp == "unconfined":
        return None
    if options.seccomp == "default":
        from hostrt.seccomp_default import DEFAULT_PROFILE

        profile: profiles.Profile | None = DEFAULT_PROFILE
    else:
        try:
            data = json.loads(Path(options.seccomp).read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"invalid seccomp profile {options.seccomp}: {err}") from None
        profile = profiles.parse(data, options.seccomp)
    return None if profile is None else profiles.resolve(profile, caps, architecture, kernel)


def _mounts(options: RunOptions, files: ContainerFiles) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"destination": dest, "type": kind, "source": source, "options": list(opts)}
        for dest, kind, source, opts in DEFAULT_MOUNTS
    ]
    for dest, source in (("/etc/hostname", files.hostname), ("/etc/hosts", files.hosts),
                         ("/etc/resolv.conf", files.resolv_conf)):
        mounts.append({"destination": dest, "type": "bind", "source": str(source), "options": ["rbind", "rprivate"]})
    for volume in options.volumes:
        # `:ro` is read-only all the way down, mounts below the source too ("rro", as
        # Docker asks of runc on kernels with mount_setattr; ours falls back on older ones)
        mode = ["ro", "rro"] if volume.readonly else ["rw"]
        mounts.append({"destination": volume.destination, "type": "bind", "source": volume.source,
                       "options": ["rbind", "rprivate", *mode]})
    for spec in options.tmpfs:
        dest, _, extra = spec.partition(":")
        opts = ["nosuid", "nodev", "noexec"] + [o for o in extra.split(",") if o]
        mounts.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts})
    return mounts


def _resources(options: RunOptions) -> dict[str, Any]:
    # Device rules as dockerd writes them: deny all. The runtime appends the devices every
    # container may use (runc's list: mknod, null, zero, full, tty, random, urandom, ptys,
    # ptmx, tun), as runc and crun do for Docker and hostrt-runtime does too
    # (backends/linux_native/tables.py), so the list lives in one place.
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if options.memory is not None:
        # docker's default --memory-swap is twice the memory (memory + as much swap)
        resources["memory"] = {"limit": options.memory, "swap": options.memory * 2}
    if options.cpus is not None:
        resources["cpu"] = {"quota": int(options.cpus * CPU_PERIOD_US), "period": CPU_PERIOD_US}
    if options.pids_limit is not None:
        resources["pids"] = {"limit": options.pids_limit}
    return resources


def build_spec(
    image_config: dict[str, Any],
    options: RunOptions,
    rootfs: Path,
    container_id: str,
    files: ContainerFiles,
    netns: str | None = None,
    *,
    architecture: str,
    kernel: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The runtime-spec v1.1 config for one container (rootfs given as an absolute path), to run
    on a machine of this OCI architecture with this kernel version (None: not known, recent)."""
    hostname = options.hostname or container_id[:12]
    user = resolve_user(options.user if options.user is not None else image_config.get("User"), rootfs)
    caps = capabilities(options)
    process_caps = caps if user.uid == 0 else []  # docker gives non-root processes no effective caps
    namespaces = [{"type": kind} for kind in ("pid", "ipc", "uts", "mount", "cgroup")]
    if options.network != "host":  # joined by path when hostrt made it (bridge), else a new empty one
        namespaces.append({"type": "network", **({"path": netns} if netns else {})})
    resources = _resources(options)
    cgroups_path = f"/hostrt/{container_id}"
    if "HOSTRT_ROOTLESS_UID" in os.environ:  # an ordinary user's containers (hostrt/rootless)
        from hostrt.rootless import cgroups as rootless_cgroups

        rootless_cgroups.refuse_unappliable(resources)
        cgroups_path = rootless_cgroups.cgroups_path(container_id)
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": cgroups_path,
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    seccomp = seccomp_profile(options, caps, architecture, kernel)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": options.tty,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.additional_gids)},
            "args": process_args(image_config, options),
            "env": merged_env(image_config, options, hostname, user.home),
            "cwd": options.workdir or image_config.get("WorkingDir") or "/",
            "capabilities": {"bounding": caps, "effective": process_caps, "permitted": process_caps},
            "noNewPrivileges": options.no_new_privileges,
        },
        "root": {"path": str(rootfs), "readonly": options.read_only},
        "hostname": hostname,
        "mounts": _mounts(options, files),
        "linux": linux,
    }
